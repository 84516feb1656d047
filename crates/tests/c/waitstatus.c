/* Runs argv[1..] as a child with fork + execvp, waits for it with
 * waitpid, and prints the raw wait status: the end-to-end tests compare
 * what a C parent sees of bpsh with what it sees of the same command run
 * locally. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: waitstatus cmd [args...]\n");
        return 2;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 2;
    }
    if (pid == 0) {
        execvp(argv[1], argv + 1);
        perror("execvp");
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid) {
        perror("waitpid");
        return 2;
    }
    printf("status=%d exited=%d code=%d signaled=%d sig=%d core=%d\n", status, WIFEXITED(status),
           WIFEXITED(status) ? WEXITSTATUS(status) : -1, WIFSIGNALED(status),
           WIFSIGNALED(status) ? WTERMSIG(status) : -1, WIFSIGNALED(status) ? WCOREDUMP(status) : 0);
    return 0;
}
