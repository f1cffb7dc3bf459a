/* Sleep, then read a file: the smallest program whose waiting a host can overlap.
 *
 *     sleeper MILLIS FILE
 *
 * Sleeps MILLIS milliseconds with nanosleep() (wasi-libc turns it into one poll_oneoff call
 * with a relative clock subscription), checks on the monotonic clock that at least that long
 * passed, then prints the first line of FILE (at most 200 bytes):
 *
 *     slept 1000 ms; read: first line of the file
 *
 * Exit status: 0 on success; 1 if the sleep was short or the file cannot be read (reason on
 * stderr); 2 on bad usage. Only POSIX calls, no stdio, so the module stays small (a host that
 * runs ten thousand instances pays for each one's memory).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void put(int fd, const char *s) {
    size_t len = strlen(s);
    while (len > 0) {
        ssize_t n = write(fd, s, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return;
        }
        s += n;
        len -= (size_t)n;
    }
}

static int fail(const char *what, const char *detail) {
    put(2, "sleeper: ");
    put(2, what);
    if (detail) {
        put(2, ": ");
        put(2, detail);
    }
    put(2, "\n");
    return 1;
}

/* Parses a decimal number of milliseconds, at most one day. */
static int parse_millis(const char *s, long *out) {
    long value = 0;
    if (*s == '\0') return 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return 0;
        value = value * 10 + (*s - '0');
        if (value > 86400000L) return 0;
    }
    *out = value;
    return 1;
}

static long long monotonic_nanos(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

int main(int argc, char **argv) {
    long millis;
    if (argc != 3 || !parse_millis(argv[1], &millis)) {
        put(2, "usage: sleeper MILLIS FILE\n");
        return 2;
    }

    long long start = monotonic_nanos();
    struct timespec request = {.tv_sec = millis / 1000, .tv_nsec = (millis % 1000) * 1000000L};
    while (nanosleep(&request, &request) != 0) {
        if (errno != EINTR) return fail("nanosleep", strerror(errno));
    }
    if (monotonic_nanos() - start < (long long)millis * 1000000LL)
        return fail("woke up early", argv[1]);

    int fd = open(argv[2], O_RDONLY);
    if (fd < 0) return fail(argv[2], strerror(errno));
    char line[201];
    size_t len = 0;
    while (len < sizeof line - 1) {
        ssize_t n = read(fd, line + len, sizeof line - 1 - len);
        if (n < 0) {
            if (errno == EINTR) continue;
            close(fd);
            return fail(argv[2], strerror(errno));
        }
        if (n == 0) break;
        len += (size_t)n;
    }
    close(fd);
    line[len] = '\0';
    char *newline = strchr(line, '\n');
    if (newline) *newline = '\0';

    put(1, "slept ");
    put(1, argv[1]);
    put(1, " ms; read: ");
    put(1, line);
    put(1, "\n");
    return 0;
}
