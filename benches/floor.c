/*
 * The floor for sundial's start-lateness figures (benches/run.sh): what a program that does
 * nothing but sleep and spawn achieves on this machine, in the same run.
 *
 *   floor stamp FILE              the stamping child: appends "NOW SCHEDULED_FOR\n" to FILE,
 *                                 NOW (CLOCK_REALTIME, s.ns) read first thing in main and
 *                                 SCHEDULED_FOR from $SUNDIAL_SCHEDULED_FOR (as sundial sets
 *                                 it, or as the modes below set it)
 *   floor ticks N OFFSET_MS FILE  N times: sleeps to the next whole second + OFFSET_MS with
 *                                 clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME), then
 *                                 posix_spawn()s `floor stamp FILE` in its own process group
 *                                 (the instants of a 1-second schedule)
 *   floor ticks N OFFSET_MS FILE -- PROGRAM ARG...
 *                                 the same, spawning PROGRAM ARG... instead (FILE unused):
 *                                 the floor of a Python entrypoint's start is the same
 *                                 interpreter calling the same stamping function
 *   floor burst N AT FILE         sleeps to AT (whole epoch seconds, CLOCK_REALTIME,
 *                                 TIMER_ABSTIME), then posix_spawn()s N stamping children one
 *                                 after the other, reaping the ended ones as it goes
 *
 * The children of sundial and of the floor are the same program with the same arguments,
 * so the difference is only what happens between the due instant and exec.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static int stamp(const char *file) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    const char *scheduled = getenv("SUNDIAL_SCHEDULED_FOR");
    char line[160];
    int n = snprintf(line, sizeof line, "%lld.%09ld %s\n", (long long)now.tv_sec, now.tv_nsec,
                     scheduled ? scheduled : "-");
    int fd = open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, line, (size_t)n) != n) {
        perror(file);
        return 1;
    }
    return close(fd) == 0 ? 0 : 1;
}

/* "SUNDIAL_SCHEDULED_FOR=2026-12-01T18:00:00.500Z", as sundial formats it (milliseconds). */
static void scheduled_env(char *out, size_t size, time_t sec, long ms) {
    struct tm tm;
    gmtime_r(&sec, &tm);
    char day[32];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, size, "SUNDIAL_SCHEDULED_FOR=%s.%03ldZ", day, ms);
}

/* environ with SUNDIAL_SCHEDULED_FOR replaced by `entry`; the array is reused. */
static char **child_env(char *entry) {
    static char **env;
    static size_t count;
    if (!env) {
        for (count = 0; environ[count]; count++) {
        }
        env = calloc(count + 2, sizeof *env);
        size_t j = 0;
        for (size_t i = 0; i < count; i++) {
            if (strncmp(environ[i], "SUNDIAL_SCHEDULED_FOR=", 22) != 0) env[j++] = environ[i];
        }
        count = j;
    }
    env[count] = entry;
    env[count + 1] = NULL;
    return env;
}

/* Spawns `cmd` (NULL: `self stamp FILE`) in its own process group, found on PATH. */
static int spawn_stamp(const char *self, const char *file, char *entry, char **cmd) {
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    char *own[] = {(char *)self, "stamp", (char *)file, NULL};
    char **argv = cmd ? cmd : own;
    pid_t pid;
    int err = posix_spawnp(&pid, argv[0], NULL, &attr, argv, child_env(entry));
    posix_spawnattr_destroy(&attr);
    if (err) {
        fprintf(stderr, "posix_spawn %s: %s\n", argv[0], strerror(err));
        return 1;
    }
    return 0;
}

static void reap(int options) {
    while (waitpid(-1, NULL, options) > 0) {
    }
}

static void sleep_until(time_t sec, long nsec) {
    struct timespec at = {.tv_sec = sec, .tv_nsec = nsec};
    while (clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &at, NULL) == EINTR) {
    }
}

static int ticks(const char *self, long n, long offset_ms, const char *file, char **cmd) {
    static char entry[96];
    for (long i = 0; i < n; i++) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        time_t sec = now.tv_sec + (now.tv_nsec >= offset_ms * 1000000L ? 1 : 0);
        sleep_until(sec, offset_ms * 1000000L);
        scheduled_env(entry, sizeof entry, sec, offset_ms);
        if (spawn_stamp(self, file, entry, cmd)) return 1;
        reap(WNOHANG);
    }
    reap(0);
    return 0;
}

static int burst(const char *self, long n, time_t at, const char *file) {
    static char entry[96];
    sleep_until(at, 0);
    scheduled_env(entry, sizeof entry, at, 0);
    for (long i = 0; i < n; i++) {
        if (spawn_stamp(self, file, entry, NULL)) return 1;
        reap(WNOHANG);
    }
    reap(0);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "stamp") == 0) return stamp(argv[2]);
    /* The children exec this very file: an absolute path keeps that independent of cwd. */
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len < 0) {
        perror("/proc/self/exe");
        return 1;
    }
    self[len] = '\0';
    if (argc == 5 && strcmp(argv[1], "ticks") == 0)
        return ticks(self, atol(argv[2]), atol(argv[3]), argv[4], NULL);
    if (argc >= 7 && strcmp(argv[1], "ticks") == 0 && strcmp(argv[5], "--") == 0)
        return ticks(self, atol(argv[2]), atol(argv[3]), argv[4], argv + 6);
    if (argc == 5 && strcmp(argv[1], "burst") == 0)
        return burst(self, atol(argv[2]), (time_t)atoll(argv[3]), argv[4]);
    fprintf(stderr, "usage: floor stamp FILE | floor ticks N OFFSET_MS FILE [-- PROGRAM ARG...] | floor burst N AT FILE\n");
    return 2;
}
