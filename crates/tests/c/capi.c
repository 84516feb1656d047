/* The breadth of the C API: node lists and specs, node addresses and
 * attributes, the remote process list, node sets, the _io and flag variants
 * and the calls that give ENOSYS. Prints one result per line (capi.rs
 * checks every line); run it on a cluster of 3 nodes whose node 2 is down
 * and with one remote process on node 0. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/bproc.h>
#include <unistd.h>

/* errno as a name, for the values these calls give. */
static const char *ename(int e) {
    static char other[32];
    switch (e) {
    case ENOSYS: return "ENOSYS";
    case EINVAL: return "EINVAL";
    case EPERM: return "EPERM";
    case ENODATA: return "ENODATA";
    case ERANGE: return "ERANGE";
    case ENOENT: return "ENOENT";
    case EFAULT: return "EFAULT";
    }
    snprintf(other, sizeof other, "%d", e);
    return other;
}

/* "RESULT" or "-1 ERRNO". */
static void result(const char *what, int r) {
    if (r < 0)
        printf("%s -1 %s\n", what, ename(errno));
    else
        printf("%s %d\n", what, r);
}

/* Node numbers of a set, space-separated after a colon. */
static void print_set(const char *what, int r, struct bproc_node_set_t *ns) {
    if (r < 0) {
        printf("%s -1 %s\n", what, ename(errno));
        return;
    }
    printf("%s %d:", what, r);
    for (int i = 0; i < ns->size; i++)
        printf(" %d", bproc_node_set_node(ns, i)->node);
    printf("\n");
}

static void spec(const char *str) {
    struct bproc_node_set_t ns = BPROC_EMPTY_NODESET;
    char what[64];
    snprintf(what, sizeof what, "nodespec \"%s\"", str);
    errno = 0;
    print_set(what, bproc_nodespec(&ns, str), &ns);
    bproc_nodeset_free(&ns);
}

static void filter(struct bproc_node_set_t *in, const char *str) {
    struct bproc_node_set_t out;
    char what[64];
    snprintf(what, sizeof what, "nodefilter \"%s\"", str);
    print_set(what, bproc_nodefilter(&out, in, str), &out);
    bproc_nodeset_free(&out);
}

static struct bproc_node_info_t made_up(int node, const char *state) {
    struct bproc_node_info_t n;
    memset(&n, 0, sizeof n);
    n.node = node;
    strcpy(n.status, state);
    return n;
}

/* A vector call's result: the return value, and pids[0] with its text. */
static void vector(const char *what, int r, int pid) {
    if (r < 0)
        printf("%s -1 %s\n", what, ename(errno));
    else
        printf("%s %d pids[0] %d (%s)\n", what, r, pid, bproc_strerror(pid));
}

int main(int argc, char **args) {
    if (argc == 2 && strcmp(args[1], "chmod") == 0) {
        result("chmod 0 0111", bproc_chmod(0, 0111));
        return 0;
    }
    /* Nodes. */
    result("numnodes", bproc_numnodes());
    struct bproc_node_set_t all;
    int n = bproc_nodelist(&all);
    printf("nodelist %d size %d\n", n, all.size);
    for (int i = 0; i < all.size; i++) {
        struct bproc_node_info_t *info = bproc_node_set_node(&all, i);
        printf("node %d %s\n", info->node, info->status);
    }
    bproc_nodeset_free(&all);

    const char *specs[] = {"0-1", "1,0",  "all",  "up", "allup", "down", "notdown", "allnotdown", "master", "2-",
                           "1-",  "n1,.0", "0x1", "010", "0,0",  ",,1,,", "",       "nothing",    "1;2",    "0,",
                           "all!up", "-1"};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
        spec(specs[i]);

    /* bproc_nodefilter over a set made here: sparse, out of order. */
    struct bproc_node_set_t made = BPROC_EMPTY_NODESET;
    struct bproc_node_info_t n7 = made_up(7, "up"), n3 = made_up(3, "boot"), n5 = made_up(5, "up");
    bproc_nodeset_add(&made, &n7);
    bproc_nodeset_add(&made, &n3);
    bproc_nodeset_add(&made, &n5);
    filter(&made, "all");
    filter(&made, "4-");
    filter(&made, "notup");
    filter(&made, "boot,7,3,9");
    filter(&made, "master,up");
    filter(&made, "x y");
    bproc_nodeset_free(&made);
    filter(&made, "master");
    filter(&made, "x y");

    /* Node set bookkeeping. */
    struct bproc_node_set_t ns;
    result("nodeset_init 5", bproc_nodeset_init(&ns, 5));
    printf("  size %d alloc %d\n", ns.size, ns.alloc);
    result("nodeset_grow 1", bproc_nodeset_grow(&ns, 1));
    printf("  size %d alloc %d\n", ns.size, ns.alloc);
    for (int i = 0; i < ns.size; i++)
        *bproc_node_set_node(&ns, i) = made_up(10 + i, "up");
    result("nodeset_add", bproc_nodeset_add(&ns, &n3));
    result("nodeset_append self", bproc_nodeset_append(&ns, &ns));
    printf("  size %d alloc %d last %d\n", ns.size, ns.alloc, bproc_node_set_node(&ns, ns.size - 1)->node);
    result("nodeset_grow 200", bproc_nodeset_grow(&ns, 200));
    printf("  size %d alloc %d\n", ns.size, ns.alloc);
    bproc_nodeset_free(&ns);
    printf("nodeset_free size %d alloc %d node %s\n", ns.size, ns.alloc, ns.node ? "set" : "NULL");
    bproc_nodeset_free(&ns);
    result("nodeset_init 0", bproc_nodeset_init(&ns, 0));
    printf("  size %d alloc %d node %s\n", ns.size, ns.alloc, ns.node ? "set" : "NULL");

    /* Addresses and attributes. */
    struct sockaddr_in sin;
    int size = sizeof sin;
    memset(&sin, 0, sizeof sin);
    int r = bproc_nodeaddr(0, (struct sockaddr *)&sin, &size);
    if (r == 0)
        printf("nodeaddr 0 0 size %d family %s addr %s\n", size, sin.sin_family == AF_INET ? "AF_INET" : "other",
               inet_ntoa(sin.sin_addr));
    else
        result("nodeaddr 0", r);
    size = 4;
    result("nodeaddr 0 small", bproc_nodeaddr(0, (struct sockaddr *)&sin, &size));
    size = sizeof sin;
    result("nodeaddr 2", bproc_nodeaddr(2, (struct sockaddr *)&sin, &size));
    result("nodeaddr master", bproc_nodeaddr(BPROC_NODE_MASTER, (struct sockaddr *)&sin, &size));
    result("nodeaddr 9", bproc_nodeaddr(9, (struct sockaddr *)&sin, &size));

    char buf[BPROC_STATE_LEN + 1];
    memset(buf, 'x', sizeof buf);
    r = bproc_getnodeattr(0, "state", buf, sizeof buf);
    printf("getnodeattr 0 state %d %s\n", r, r > 0 ? buf : "-");
    r = bproc_getnodeattr(2, "state", buf, sizeof buf);
    printf("getnodeattr 2 state %d %s\n", r, r > 0 ? buf : "-");
    result("getnodeattr 0 state size 0", bproc_getnodeattr(0, "state", NULL, 0));
    result("getnodeattr 0 state small", bproc_getnodeattr(0, "state", buf, 2));
    result("getnodeattr 0 addr", bproc_getnodeattr(0, "addr", &sin, sizeof sin));
    result("getnodeattr 0 cpus", bproc_getnodeattr(0, "cpus", buf, sizeof buf));
    result("getnodeattr master state", bproc_getnodeattr(BPROC_NODE_MASTER, "state", buf, sizeof buf));
    result("getnodeattr 9 state", bproc_getnodeattr(9, "state", buf, sizeof buf));
    r = bproc_nodestatus(1, buf, sizeof buf);
    printf("nodestatus 1 %d %s\n", r, r > 0 ? buf : "-");

    /* Remote processes. */
    struct bproc_proc_info_t *procs = NULL;
    r = bproc_proclist(BPROC_NODE_ANY, &procs);
    printf("proclist any %d:", r);
    for (int i = 0; i < r; i++)
        printf(" %d@%d", procs[i].pid, procs[i].node);
    printf("\n");
    if (r > 0)
        free(procs);
    static struct bproc_proc_info_t dummy;
    procs = &dummy; /* must become NULL */
    r = bproc_proclist(1, &procs);
    printf("proclist 1 %d %s\n", r, procs ? "set" : "NULL");
    procs = NULL;
    r = bproc_proclist(0, &procs);
    printf("proclist 0 %d\n", r);
    if (r > 0)
        free(procs);

    /* The _io and flag variants: no io list is the plain call (here failing
     * on the down node 2, or the missing node 9), and so is a list on the
     * same nodes; a bad list is refused before anything moves (io.c runs
     * good ones). */
    struct bproc_io_t io;
    memset(&io, 0, sizeof io);
    io.fd = 1;
    io.type = BPROC_IO_FILE;
    strcpy(io.d.file.name, "/dev/null");
    char *argv[] = {"true", NULL};
    char *envp[] = {NULL};
    int nodes[1] = {2}, pids[1] = {0};
    fflush(stdout);
    errno = 0;
    r = bproc_rfork_io(2, NULL, -1);
    printf("rfork_io 2 NULL -1: %d errno %d (%s)\n", r, errno, bproc_strerror(errno));
    fflush(stdout);
    errno = 0;
    r = _bproc_rfork(9, BPROC_DUMP_ALL);
    printf("_bproc_rfork 9: %d errno %d (%s)\n", r, errno, bproc_strerror(errno));
    fflush(stdout);
    r = _bproc_rfork_io(2, &io, -1, 0);
    printf("_bproc_rfork_io 2 io -1: %d errno %d (%s)\n", r, errno, bproc_strerror(errno));
    errno = 0;
    r = bproc_rfork_io(2, &io, 1);
    printf("rfork_io 2 io 1: %d errno %d (%s)\n", r, errno, bproc_strerror(errno));
    result("rfork_io 0 io 17", bproc_rfork_io(0, &io, 17));
    struct bproc_io_t bad[2];
    memcpy(&bad[0], &io, sizeof io);
    memcpy(&bad[1], &io, sizeof io);
    bad[1].type = BPROC_IO_MEMFILE;
    result("rfork_io 0 memfile", bproc_rfork_io(0, bad, 2));
    bad[1].type = 7;
    result("_bproc_rfork_io 0 type 7", _bproc_rfork_io(0, bad, 2, BPROC_DUMP_ALL));
    bad[1].type = BPROC_IO_SOCKET;
    bad[1].d.addr.sa_family = AF_INET6;
    result("rfork_io 0 inet6", bproc_rfork_io(0, bad, 2));
    fflush(stdout);
    pids[0] = 0;
    r = bproc_vrfork_io(1, nodes, pids, NULL, -1);
    vector("vrfork_io 2 NULL", r, pids[0]);
    fflush(stdout);
    pids[0] = 0;
    nodes[0] = 9;
    r = _bproc_vrfork(1, nodes, pids, BPROC_DUMP_ALL);
    vector("_bproc_vrfork 9", r, pids[0]);
    fflush(stdout);
    pids[0] = 0;
    nodes[0] = 2;
    r = _bproc_vrfork_io(1, nodes, pids, NULL, 3, 0);
    vector("_bproc_vrfork_io 2 NULL", r, pids[0]);
    pids[0] = 0;
    r = bproc_vrfork_io(1, nodes, pids, &io, 1);
    vector("vrfork_io 2 io 1", r, pids[0]);
    fflush(stdout);
    pids[0] = 0;
    r = _bproc_vrfork_io(1, nodes, pids, &io, 1, 0);
    vector("_bproc_vrfork_io 2 io 1", r, pids[0]);
    fflush(stdout);
    pids[0] = 0;
    r = bproc_vexecmove_io(1, nodes, pids, NULL, -1, "/bin/true", argv, envp);
    vector("vexecmove_io 2 NULL", r, pids[0]);
    pids[0] = 0;
    r = bproc_vexecmove_io(1, nodes, pids, &io, 1, "/bin/true", argv, envp);
    vector("vexecmove_io 2 io 1", r, pids[0]);
    fflush(stdout);
    errno = 0;
    r = bproc_execmove_io(2, NULL, -1, "/bin/true", argv, envp);
    printf("execmove_io 2 NULL -1: %d errno %d (%s)\n", r, errno, bproc_strerror(errno));
    errno = 0;
    r = bproc_execmove_io(2, &io, 1, "/bin/true", argv, envp);
    printf("execmove_io 2 io 1: %d errno %d (%s)\n", r, errno, bproc_strerror(errno));
    fflush(stdout);
    errno = 0;
    r = bproc_rexec_io(9, NULL, -1, "/bin/true", argv, envp);
    printf("rexec_io 9 NULL -1: %d errno %d (%s)\n", r, errno, bproc_strerror(errno));
    errno = 0;
    r = bproc_rexec_io(9, &io, 1, "/bin/true", argv, envp);
    printf("rexec_io 9 io 1: %d errno %d (%s)\n", r, errno, bproc_strerror(errno));
    fflush(stdout);

    /* Node permissions: root only, execute bits only. */
    result("chmod 0 0100", bproc_chmod(0, 0100));
    result("chown 0 4242", bproc_chown(0, 4242));
    result("chgrp 0 50", bproc_chgrp(0, 50));
    struct bproc_node_info_t perm;
    if (bproc_nodeinfo(0, &perm) == 0)
        printf("perms 0 mode %o user %u group %u\n", perm.mode, perm.user, perm.group);
    result("chmod 0 0644", bproc_chmod(0, 0644));
    result("chmod 9 0111", bproc_chmod(9, 0111));
    result("chmod 0 0111", bproc_chmod(0, 0111));
    result("chown 0 0", bproc_chown(0, 0));
    result("chgrp 0 0", bproc_chgrp(0, 0));

    /* Calls that give ENOSYS. */
    char *list = NULL;
    struct bproc_node_set_t from_fd;
    result("nodelist_", bproc_nodelist_(&from_fd, 0));
    result("notifier", bproc_notifier());
    result("setnodeattr", bproc_setnodeattr(0, "cpus", buf, 4));
    result("nodesetstatus", bproc_nodesetstatus(0, "error"));
    result("nodereboot", bproc_nodereboot(0));
    result("nodehalt", bproc_nodehalt(0));
    result("nodepwroff", bproc_nodepwroff(0));
    result("nodereboot_async", bproc_nodereboot_async(0));
    result("nodehalt_async", bproc_nodehalt_async(0));
    result("nodepwroff_async", bproc_nodepwroff_async(0));
    result("nodechroot", bproc_nodechroot(0, "/"));
    result("nodereconnect", bproc_nodereconnect(0, (struct sockaddr *)&sin, sizeof sin, NULL, 0));
    result("execve", bproc_execve("/bin/true", argv, envp));
    result("dump", bproc_dump(1, BPROC_DUMP_ALL));
    result("undump", bproc_undump(0));
    result("execdump", bproc_execdump(1, BPROC_DUMP_ALL, "/bin/true", argv, envp));
    result("libclear", bproc_libclear());
    result("libadd", bproc_libadd("/lib/libc.so.6"));
    result("libdel", bproc_libdel("/lib/libc.so.6"));
    result("liblist", bproc_liblist(&list));
    printf("done\n");
    return 0;
}
