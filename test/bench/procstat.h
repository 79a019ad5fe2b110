/* procstat.h: CPU time and memory of one Apache instance (its parent and the parent's children),
 * from /proc. Header-only, for the benchmark tools. */
#ifndef BENCH_PROCSTAT_H
#define BENCH_PROCSTAT_H

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

typedef struct {
    int ppid;
    unsigned long long utime, stime, cutime, cstime;   /* clock ticks */
} ps_stat_t;

static int ps_read_stat(pid_t pid, ps_stat_t *st)
{
    char path[64], buf[2048], *p;
    FILE *f;
    size_t n;
    long long cu, cs;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (!(f = fopen(path, "r"))) return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    if (!(p = strrchr(buf, ')'))) return -1;
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
     * stime cutime cstime */
    if (sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld",
               &st->ppid, &st->utime, &st->stime, &cu, &cs) != 5) {
        return -1;
    }
    st->cutime = (unsigned long long)cu;
    st->cstime = (unsigned long long)cs;
    return 0;
}

/* The parent and its live children; returns the count (at most max). */
static int ps_instance(pid_t parent, pid_t *out, int max)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int n = 0;
    ps_stat_t st;

    if (!d) return 0;
    if (max > 0) out[n++] = parent;
    while ((e = readdir(d)) && n < max) {
        pid_t pid;
        if (!isdigit((unsigned char)e->d_name[0])) continue;
        pid = (pid_t)atoi(e->d_name);
        if (pid == parent) continue;
        if (ps_read_stat(pid, &st) == 0 && st.ppid == parent) out[n++] = pid;
    }
    closedir(d);
    return n;
}

/* CPU seconds of the instance so far: parent and live children, plus the parent's reaped
 * children (cutime), so that children exiting during a run keep counting. */
static double ps_cpu(pid_t parent)
{
    pid_t pids[4096];
    int i, n = ps_instance(parent, pids, 4096);
    unsigned long long ticks = 0;
    ps_stat_t st;

    for (i = 0; i < n; i++) {
        if (ps_read_stat(pids[i], &st) != 0) continue;
        ticks += st.utime + st.stime;
        if (pids[i] == parent) ticks += st.cutime + st.cstime;
    }
    return (double)ticks / (double)sysconf(_SC_CLK_TCK);
}

static long ps_field_kb(const char *path, const char *name)
{
    char line[256];
    size_t len = strlen(name);
    long v = -1;
    FILE *f = fopen(path, "r");

    if (!f) return -1;
    while (fgets(line, sizeof(line), f)) {
        if (!strncmp(line, name, len) && line[len] == ':') {
            v = strtol(line + len + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

typedef struct {
    int nproc;
    long rss_kb;      /* sum of VmRSS (shared pages counted once per process) */
    long pss_kb;      /* sum of Pss from smaps_rollup (shared pages split) */
    long anon_kb;     /* sum of RssAnon */
} ps_mem_t;

static ps_mem_t ps_mem(pid_t parent)
{
    pid_t pids[4096];
    int i, n = ps_instance(parent, pids, 4096);
    ps_mem_t m = { 0, 0, 0, 0 };
    char path[64];
    long v;

    for (i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "/proc/%d/status", (int)pids[i]);
        if ((v = ps_field_kb(path, "VmRSS")) < 0) continue;
        m.nproc++;
        m.rss_kb += v;
        if ((v = ps_field_kb(path, "RssAnon")) > 0) m.anon_kb += v;
        snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pids[i]);
        if ((v = ps_field_kb(path, "Pss")) > 0) m.pss_kb += v;
    }
    return m;
}

#endif
