/* The rfork check of issue 5: a 64 MB buffer with a pattern, a file read
 * halfway, then bproc_rfork(node). The child checks what it sees on the
 * node and exits 42; the parent prints the child's PID and waits for it.
 * Usage: rfork NODE FILE [GATE]: with GATE, the child waits (up to 30 s)
 * until the file GATE exists before it reports and exits. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/bproc.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* The buffer: 64 MB, or RFORK_MB megabytes. */
static size_t BUF = 64 << 20;

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: rfork NODE FILE [GATE]\n");
        return 2;
    }
    int node = atoi(argv[1]);
    if (getenv("RFORK_MB"))
        BUF = (size_t)atoi(getenv("RFORK_MB")) << 20;
    unsigned char *buf = malloc(BUF);
    for (size_t i = 0; i < BUF; i++)
        buf[i] = (unsigned char)(i * 7 + 3);
    int fd = open(argv[2], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        perror("open");
        return 2;
    }
    off_t half = st.st_size / 2;
    char *tmp = malloc(half);
    if (read(fd, tmp, half) != half) {
        perror("read");
        return 2;
    }
    fflush(stdout);
    pid_t me = getpid();
    int pid = bproc_rfork(node);
    if (pid < 0) {
        printf("rfork failed: errno %d (%s)\n", errno, bproc_strerror(errno));
        return 3;
    }
    if (pid == 0) {
        for (int i = 0; argc == 4 && access(argv[3], F_OK) != 0 && i < 3000; i++)
            usleep(10000);
        int intact = 1;
        for (size_t i = 0; i < BUF; i++)
            if (buf[i] != (unsigned char)(i * 7 + 3)) {
                intact = 0;
                break;
            }
        printf("child: node %d pid %d ppid-was %d buffer %s offset %lld of %lld\n", bproc_currnode(), (int)getpid(),
               (int)me, intact ? "intact" : "CORRUPT", (long long)lseek(fd, 0, SEEK_CUR), (long long)st.st_size);
        fflush(stdout);
        exit(42);
    }
    printf("parent: child %d\n", pid);
    fflush(stdout);
    int status;
    if (waitpid(pid, &status, 0) != pid) {
        perror("waitpid");
        return 5;
    }
    printf("parent: status exited=%d code=%d\n", WIFEXITED(status), WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}
