/* BProc io lists (struct bproc_io_t): the descriptors a process placed on a
 * node gets in place of its relayed stdio.
 * Usage: io rfork NODE PORT FILE      stdout: a socket to the front end's
 *                                     PORT (0.0.0.0, with the pid and fd
 *                                     first); stderr: FILE on the node
 *        io execmove NODE FILE        sh on NODE, its stdout appended to FILE
 *        io vexecmove FILE NODE...    sh on each NODE, stdout appended to FILE */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/bproc.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static struct bproc_io_t file_io(int fd, const char *name, int flags) {
    struct bproc_io_t io;
    memset(&io, 0, sizeof io);
    io.fd = fd;
    io.type = BPROC_IO_FILE;
    io.d.file.flags = flags;
    io.d.file.mode = 0644;
    strncpy(io.d.file.name, name, sizeof io.d.file.name - 1);
    return io;
}

int main(int argc, char **argv) {
    if (argc >= 5 && strcmp(argv[1], "rfork") == 0) {
        struct bproc_io_t io[2];
        memset(&io[0], 0, sizeof io[0]);
        io[0].fd = 1;
        io[0].type = BPROC_IO_SOCKET;
        io[0].flags = BPROC_IO_SEND_INFO;
        struct sockaddr_in *sin = (struct sockaddr_in *)&io[0].d.addr;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((unsigned short)atoi(argv[3]));
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
        io[1] = file_io(2, argv[4], O_WRONLY | O_CREAT | O_TRUNC);
        fflush(stdout);
        int pid = bproc_rfork_io(atoi(argv[2]), io, 2);
        if (pid < 0) {
            printf("rfork_io failed: errno %d (%s)\n", errno, bproc_strerror(errno));
            return 3;
        }
        if (pid == 0) {
            printf("rfork child on node %d pid %d\n", bproc_currnode(), (int)getpid());
            fprintf(stderr, "to the file from %d\n", (int)getpid());
            exit(42);
        }
        printf("parent: child %d\n", pid);
        fflush(stdout);
        int status;
        if (waitpid(pid, &status, 0) != pid)
            return 5;
        printf("parent: status %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "execmove") == 0) {
        struct bproc_io_t io = file_io(1, argv[3], O_WRONLY | O_CREAT | O_APPEND);
        char *args[] = {"sh", "-c", "echo execmove pid $$ on $(hostname); exit 7", NULL};
        bproc_execmove_io(atoi(argv[2]), &io, 1, "sh", args, environ);
        printf("execmove_io failed: errno %d (%s)\n", errno, bproc_strerror(errno));
        return 3;
    }
    if (argc >= 4 && strcmp(argv[1], "vexecmove") == 0) {
        int n = argc - 3, nodes[16], pids[16];
        for (int i = 0; i < n && i < 16; i++)
            nodes[i] = atoi(argv[i + 3]);
        struct bproc_io_t io = file_io(1, argv[2], O_WRONLY | O_CREAT | O_APPEND);
        char *args[] = {"sh", "-c", "echo rank $BPROC_RANK on $(hostname)", NULL};
        if (bproc_vexecmove_io(n, nodes, pids, &io, 1, "sh", args, environ) != n) {
            printf("vexecmove_io failed: errno %d (%s)\n", errno, bproc_strerror(errno));
            return 3;
        }
        for (int i = 0; i < n; i++) {
            int status = -1;
            if (pids[i] > 0)
                waitpid(pids[i], &status, 0);
            printf("rank %d pid %d status %d\n", i, pids[i], WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        }
        return 0;
    }
    fprintf(stderr, "usage: io rfork NODE PORT FILE | execmove NODE FILE | vexecmove FILE NODE...\n");
    return 2;
}
