/* mpi.c: data-parallel training over MPI (`mpirun -np N eenn train ...`). The library does no communication; this
 * file gives ee_train its two collectives (an allreduce and a broadcast from rank 0) on MPI_COMM_WORLD. It is only
 * compiled in with MPI (make MPI=1, or found by pkg-config), and MPI is only started when an MPI launcher started
 * this process, so the same binary runs on its own as before. */
#include "common.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef EE_MPI
#include <mpi.h>
#endif

/* the number of processes the launcher says it started, from the environment of Open MPI, MPICH or Slurm's PMI */
static int launched_size(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 0) return atoi(v);
    }
    return getenv("PMIX_RANK") || getenv("PMI_RANK") ? 2 : 1;
}

#ifdef EE_MPI
static int mpi_allreduce(void *user, void *buf, size_t n, int dbl) {
    (void)user;
    /* in pieces of at most 2^30 elements (MPI counts are int) */
    for (size_t off = 0; off < n;) {
        int k = n - off > (1u << 30) ? 1 << 30 : (int)(n - off);
        char *p = (char *)buf + off * (dbl ? sizeof(double) : sizeof(float));
        if (MPI_Allreduce(MPI_IN_PLACE, p, k, dbl ? MPI_DOUBLE : MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
            return 1;
        off += (size_t)k;
    }
    return 0;
}
static int mpi_broadcast(void *user, void *buf, size_t bytes) {
    (void)user;
    for (size_t off = 0; off < bytes;) {
        int k = bytes - off > (1u << 30) ? 1 << 30 : (int)(bytes - off);
        if (MPI_Bcast((char *)buf + off, k, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS) return 1;
        off += (size_t)k;
    }
    return 0;
}
/* A failure on one rank: its line is printed, then the process leaves without MPI_Finalize, on which the launcher
 * stops every other rank, wherever they wait (MPI_Abort does the same, but Open MPI 4.1 can garble its own message
 * when two ranks stop at once). */
static void mpi_fail_exit(int status) {
    fflush(stderr);
    exit(status);
}
/* Before a rank other than 0 prints a failure: most failures (a flag, a missing file) strike every rank at once,
 * and rank 0's line is enough; the launcher stops this rank when rank 0 exits, within this pause. A failure of
 * this rank alone is printed after it. */
static void mpi_fail_pause(void) {
    if (cli_rank > 0) {
        struct timespec t = {1, 500000000};
        nanosleep(&t, NULL);
    }
}
/* another rank failed and said why: leave quietly */
static void mpi_peer_exit(void) { exit(1); }
#endif

int mpi_start(ee_parallel *par) {
    memset(par, 0, sizeof *par);
    par->size = 1;
    if (launched_size() <= 1) return 1;
#ifdef EE_MPI
    int provided = 0, rank = 0, size = 1;
    /* the collectives are called from the main thread only; OpenMP threads never call MPI */
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) die("MPI_Init failed");
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    par->rank = rank;
    par->size = size;
    par->allreduce = mpi_allreduce;
    par->broadcast = mpi_broadcast;
    cli_rank = size > 1 ? rank : -1;
    cli_fail_hook = mpi_fail_exit;
    cli_pause_hook = mpi_fail_pause;
    cli_peer_hook = mpi_peer_exit;
    return size;
#else
    die("this eenn was built without MPI, but an MPI launcher started %d copies of it: install libopenmpi-dev and "
        "rebuild (make MPI=1)", launched_size());
#endif
}

void mpi_finish(void) {
#ifdef EE_MPI
    int on = 0;
    MPI_Initialized(&on);
    if (on) MPI_Finalize();
#endif
}

/* the processes the launcher placed on this machine (for the default threads per rank) */
int mpi_local_size(void) {
    const char *v = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    if (!v) v = getenv("MPI_LOCALNRANKS");
    return v && atoi(v) > 0 ? atoi(v) : 1;
}

/* The time of one in-place sum of n floats over every rank (MPI_Allreduce, as training sums its gradients), for
 * about `secs` seconds after a warm-up: mean, median and 99th percentile in ms (rank 0's clock; every rank times
 * the same calls). 0, or -1 without MPI. */
int mpi_time_allreduce(size_t n, double secs, double *mean, double *p50, double *p99, int *reps) {
#ifdef EE_MPI
    float *buf = calloc(n ? n : 1, sizeof(float));
    double *t = malloc(100000 * sizeof(double));
    if (!buf || !t) die("out of memory");
    for (size_t i = 0; i < n; i++) buf[i] = (float)(i % 7) * 1e-3f;
    for (int w = 0; w < 3; w++) mpi_allreduce(NULL, buf, n, 0);
    int k = 0;
    double t0 = MPI_Wtime(), sum = 0;
    for (int go = 1; go && k < 100000; k++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double a = MPI_Wtime();
        if (mpi_allreduce(NULL, buf, n, 0)) die("MPI_Allreduce failed");
        t[k] = (MPI_Wtime() - a) * 1e3;
        sum += t[k];
        go = MPI_Wtime() - t0 < secs;
        MPI_Bcast(&go, 1, MPI_INT, 0, MPI_COMM_WORLD); /* rank 0 decides, so every rank stops together */
    }
    qsort(t, (size_t)k, sizeof *t, cmp_double);
    *mean = sum / k;
    *p50 = t[k / 2];
    *p99 = t[(int)(k * 0.99) < k ? (int)(k * 0.99) : k - 1];
    *reps = k;
    free(buf);
    free(t);
    return 0;
#else
    (void)n; (void)secs; (void)mean; (void)p50; (void)p99; (void)reps;
    return -1;
#endif
}

