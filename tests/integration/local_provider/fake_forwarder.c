/* Stand-in for agent-protocol-forwarder: records its arguments, network
 * namespace and whether its config exists next to the agent socket, then
 * answers "ok\n" to every connection on -listen. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    const char *listen_at = NULL, *sock = NULL, *config = NULL;
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "-listen") == 0)
            listen_at = argv[i + 1];
        else if (strcmp(argv[i], "-kata-agent-socket") == 0)
            sock = argv[i + 1];
        else if (strcmp(argv[i], "-config") == 0)
            config = argv[i + 1];
    }
    if (listen_at == NULL || sock == NULL || config == NULL)
        return 2;

    char host[64];
    const char *colon = strrchr(listen_at, ':');
    if (colon == NULL || (size_t)(colon - listen_at) >= sizeof(host))
        return 2;
    memcpy(host, listen_at, (size_t)(colon - listen_at));
    host[colon - listen_at] = '\0';
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)strtoul(colon + 1, NULL, 10))};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return 2;
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0) {
        perror("listen");
        return 1;
    }

    const char *pids = getenv("STANDIN_PIDS");
    FILE *f = pids != NULL ? fopen(pids, "a") : NULL;
    if (f != NULL) {
        fprintf(f, "forwarder %d\n", (int)getpid());
        fclose(f);
    }
    char dir[4096], tmp[4200], rec[4200], ns[128];
    snprintf(dir, sizeof(dir), "%s", sock);
    char *slash = strrchr(dir, '/');
    if (slash != NULL)
        *slash = '\0';
    snprintf(tmp, sizeof(tmp), "%s/forwarder.record.tmp", dir);
    snprintf(rec, sizeof(rec), "%s/forwarder.record", dir);
    ssize_t n = readlink("/proc/self/ns/net", ns, sizeof(ns) - 1);
    ns[n > 0 ? n : 0] = '\0';
    f = fopen(tmp, "w");
    if (f == NULL)
        return 1;
    fprintf(f, "argv");
    for (int i = 1; i < argc; i++)
        fprintf(f, " %s", argv[i]);
    fprintf(f, "\nnetns %s\nconfig %s\n", ns, access(config, R_OK) == 0 ? "present" : "missing");
    fclose(f);
    rename(tmp, rec);

    for (;;) {
        int c = accept(fd, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        ssize_t w = write(c, "ok\n", 3);
        (void)w;
        close(c);
    }
}
