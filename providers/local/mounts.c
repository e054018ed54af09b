/* Whether the namespaces the provider mounts will outlive the daemon: they
 * are bind mounts under LOCAL_NETNS_DIR, and a mount lives in its mount
 * namespace. A daemon started in a mount namespace of its own (`ip netns
 * exec`, `unshare -m`) mounts them there only, unless the directory's mount
 * is shared with one in the host's namespace; that namespace ends with its
 * last process, and a daemon started again (in a new one) finds the pod
 * VMs' namespaces gone. */
#include "providers/local/local.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Undoes mountinfo's octal escapes (\040 for a space) in place. */
static void unescape(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
            p[3] >= '0' && p[3] <= '7') {
            *o++ = (char)((p[1] - '0') << 6 | (p[2] - '0') << 3 | (p[3] - '0'));
            p += 3;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
}

/* Whether mount point `mp` contains `path`. */
static int contains(const char *mp, const char *path)
{
    size_t n = strlen(mp);
    if (strcmp(mp, "/") == 0)
        return 1;
    return strncmp(mp, path, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* The peer group ("shared:N") of the mount holding `path` in this process's
 * namespace: N, 0 when that mount is not shared, -1 when unknown. */
static long peer_group(const char *path)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (f == NULL)
        return -1;
    char line[4096];
    size_t best = 0;
    long group = -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        char *save = NULL, *tok;
        int field = 0;
        char mp[PATH_MAX] = "";
        long shared = 0;
        for (tok = strtok_r(line, " \n", &save); tok != NULL; tok = strtok_r(NULL, " \n", &save)) {
            if (field == 4) {
                snprintf(mp, sizeof(mp), "%s", tok);
                unescape(mp);
            } else if (field >= 6) {
                if (strcmp(tok, "-") == 0)
                    break;
                if (strncmp(tok, "shared:", 7) == 0)
                    shared = strtol(tok + 7, NULL, 10);
            }
            field++;
        }
        /* The last of equal mount points is the one on top. */
        if (mp[0] != '\0' && contains(mp, path) && strlen(mp) >= best) {
            best = strlen(mp);
            group = shared;
        }
    }
    fclose(f);
    return group;
}

/* Whether the namespace of process `pid` has a mount in peer group
 * `group`. */
static int has_group(pid_t pid, long group)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/mountinfo", (int)pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -1;
    char line[4096], want[32];
    snprintf(want, sizeof(want), " shared:%ld ", group);
    int found = 0;
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, want) != NULL;
    fclose(f);
    return found;
}

/* The process whose mount namespace the mounts must reach: the host's
 * (process 1's), or, where that one cannot be seen (a container, a
 * sandbox), the one this process was started from (its parent's). */
static int reference(pid_t *pid, struct stat *ns)
{
    pid_t candidates[] = {1, getppid()};
    for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)candidates[i]);
        if (candidates[i] > 0 && stat(path, ns) == 0) {
            *pid = candidates[i];
            return 0;
        }
    }
    return -EACCES;
}

int pp__local_netns_dir_outlives(const char *dir, char *why, size_t n)
{
    struct stat self, ref;
    pid_t pid;
    if (stat("/proc/self/ns/mnt", &self) < 0)
        return -errno;
    int r = reference(&pid, &ref);
    if (r < 0)
        return r;
    if (self.st_dev == ref.st_dev && self.st_ino == ref.st_ino)
        return 1;
    /* The directory may not exist yet: its nearest ancestor that does
     * tells which mount it will be on. */
    char path[PATH_MAX], real[PATH_MAX];
    snprintf(path, sizeof(path), "%s", dir);
    while (realpath(path, real) == NULL) {
        char *slash = strrchr(path, '/');
        if (slash == NULL || slash == path) {
            snprintf(real, sizeof(real), "/");
            break;
        }
        *slash = '\0';
    }
    long group = peer_group(real);
    if (group < 0)
        return -EIO;
    if (group > 0 && has_group(pid, group) == 1)
        return 1;
    snprintf(why, n,
             "this daemon runs in a mount namespace of its own (as under `ip netns exec` or "
             "`unshare -m`), apart from %s, and the mount holding `%s` is %s: the pod VMs' network "
             "namespaces mounted there end with that mount namespace, and a daemon started "
             "again finds them gone and removes those pod VMs. Run it in the host's mount "
             "namespace (enter only a network namespace: `nsenter --net=/run/netns/NAME`), "
             "or make `LOCAL_NETNS_DIR` a shared mount in the host's namespace first",
             pid == 1 ? "the host's" : "that of the process that started it", dir,
             group == 0 ? "not shared" : "shared with no mount there");
    return 0;
}
