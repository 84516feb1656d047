/* execmove, vexecmove and vrfork from C, as BProc 4 programs call them.
 * Usage: vector execmove NODE
 *        vector vexecmove NODE...
 *        vector vrfork NODE...
 *        vector counter NODE...  (counts, moving to each NODE in turn)
 * Children report one line each; the parent prints the pids[] it got and
 * every child's exit status. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/bproc.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void wait_all(int n, int *pids) {
    for (int i = 0; i < n; i++) {
        if (pids[i] <= 0)
            continue;
        int status;
        if (waitpid(pids[i], &status, 0) != pids[i]) {
            printf("waitpid %d: %s\n", pids[i], strerror(errno));
            continue;
        }
        printf("child %d exit %d\n", i, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    }
}

int main(int argc, char **argv) {
    if (argc < 3)
        return 2;
    int n = argc - 2;
    int *nodes = calloc(n, sizeof *nodes), *pids = calloc(n, sizeof *pids);
    for (int i = 0; i < n; i++)
        nodes[i] = atoi(argv[i + 2]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(argv[1], "counter") == 0) {
        unsigned long count = 0;
        for (int i = 0; i <= n; i++) {
            for (int k = 0; k < 5; k++) {
                printf("count %lu node %d pid %d\n", ++count, bproc_currnode(), (int)getpid());
                usleep(20000);
            }
            if (i < n && bproc_move(nodes[i]) != 0) {
                printf("move to %d failed: errno %d (%s)\n", nodes[i], errno, bproc_strerror(errno));
                return 3;
            }
        }
        return 0;
    }
    if (strcmp(argv[1], "execmove") == 0) {
        char *args[] = {"sh", "-c", "echo execmove pid $$ on $(hostname); exit 9", NULL};
        printf("caller pid %d\n", (int)getpid());
        bproc_execmove(nodes[0], "sh", args, environ);
        printf("execmove failed: %s\n", bproc_strerror(errno));
        return 3;
    }
    if (strcmp(argv[1], "vexecmove") == 0) {
        int envc = 0;
        while (environ[envc])
            envc++;
        char **env = calloc(envc + 2, sizeof *env);
        memcpy(env, environ, envc * sizeof *env);
        env[envc] = "BPROC_RANK=XXXXXXX";
        char *args[] = {"sh", "-c", "echo rank $BPROC_RANK on $(hostname); exit $((10 + ${BPROC_RANK#000000}))", NULL};
        int r = bproc_vexecmove(n, nodes, pids, "sh", args, env);
        if (r != n) {
            printf("vexecmove failed: %s\n", bproc_strerror(errno));
            return 3;
        }
    } else {
        int r = bproc_vrfork(n, nodes, pids);
        if (r < 0) {
            printf("vrfork failed: %s\n", bproc_strerror(errno));
            return 3;
        }
        if (r < n) {
            printf("vrfork child %d on node %d pid %d\n", r, bproc_currnode(), (int)getpid());
            exit(10 + r);
        }
    }
    for (int i = 0; i < n; i++)
        printf("pids[%d] = %d%s%s\n", i, pids[i] > 0 ? 0 : pids[i], pids[i] < 0 ? " " : "",
               pids[i] < 0 ? bproc_strerror(pids[i]) : "");
    wait_all(n, pids);
    return 0;
}
