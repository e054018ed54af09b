/* The machine's floor for one round trip between two processes: 8 bytes
 * back and forth over a unix socketpair, the peer either sleeping in read()
 * between messages or polling with non-blocking reads. Prints
 * "RESULT sleep_us=<median> poll_us=<median>" (per round trip, median of
 * batches). No ttrpc, no libuv: what any server pays per call before doing
 * anything, on this machine, now. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BATCHES 15
#define ROUNDS  2000

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int get(int fd, char *b, int poll)
{
    for (;;) {
        ssize_t n = recv(fd, b, 8, poll ? MSG_DONTWAIT : 0);
        if (n == 8)
            return 0;
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        return -1;
    }
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median round trip in microseconds, or a negative value on error. */
static double measure(int poll)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    char b[8] = "pingpong";
    if (pid == 0) {
        close(sv[0]);
        while (get(sv[1], b, poll) == 0 && b[0] != 'q')
            if (write(sv[1], b, 8) != 8)
                break;
        _exit(0);
    }
    close(sv[1]);
    double batch[BATCHES];
    int ok = 1;
    for (int i = 0; i < BATCHES && ok; i++) {
        double t0 = now_us();
        for (int r = 0; r < ROUNDS && ok; r++)
            ok = write(sv[0], b, 8) == 8 && get(sv[0], b, poll) == 0;
        batch[i] = (now_us() - t0) / ROUNDS;
    }
    b[0] = 'q';
    if (write(sv[0], b, 8) != 8)
        ok = 0;
    close(sv[0]);
    waitpid(pid, NULL, 0);
    if (!ok)
        return -1;
    qsort(batch, BATCHES, sizeof(batch[0]), cmp);
    return batch[BATCHES / 2];
}

int main(void)
{
    double sleep_us = measure(0), poll_us = measure(1);
    if (sleep_us < 0 || poll_us < 0) {
        perror("pingpong");
        return 1;
    }
    printf("RESULT sleep_us=%.1f poll_us=%.1f\n", sleep_us, poll_us);
    return 0;
}
