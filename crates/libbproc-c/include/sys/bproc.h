/* sys/bproc.h: the bproc-rs C API, with BProc 4's names, types, constants
 * and semantics. Link with -lbproc. Written for bproc-rs from BProc 4's
 * documented interface. */
#ifndef _SYS_BPROC_H
#define _SYS_BPROC_H

#define BPROC_API_VERSION 4

/* Node numbers with a meaning of their own. */
#define BPROC_NODE_MASTER (-1) /* the front end */
#define BPROC_NODE_SELF (-2)   /* the caller's node */
#define BPROC_NODE_NONE (-3)   /* no node */
#define BPROC_NODE_ANY (-4)    /* any node (bproc_proclist) */

#define BPROC_STATUS_NONE (-2)
#define BPROC_X_OK 1 /* bproc_access: may run processes on the node */

/* What a migration dump includes (accepted, and ignored: CRIU dumps what
 * the process needs). */
#define BPROC_DUMP_LIBS 1
#define BPROC_DUMP_EXEC 2
#define BPROC_DUMP_OTHER 4
#define BPROC_DUMP_ALL 7

struct sockaddr;
#include <stdint.h>
#include <sys/socket.h>
#include <sys/bproc_common.h>

/* A set of node records: `size` used out of `alloc` allocated (malloc'd
 * by the library; free it with bproc_nodeset_free). */
struct bproc_node_set_t {
    int size, alloc;
    struct bproc_node_info_t *node;
};
#define BPROC_EMPTY_NODESET {0, 0, 0}
/* The record at position nn (an index, not a node number). */
#define bproc_node_set_node(ns, nn) (&(ns)->node[(nn)])

#ifdef __cplusplus
extern "C" {
#endif

/* Cluster and node information. */
int bproc_numnodes(void);
int bproc_currnode(void);
int bproc_nodestatus(int node, char *status, int len);
int bproc_nodeinfo(int node, struct bproc_node_info_t *info);
/* The node's AF_INET address: *size is the room at s before, the length
 * used after. -1 with ENODATA for a down node and for BPROC_NODE_MASTER. */
int bproc_nodeaddr(int node, struct sockaddr *s, int *size);
int bproc_access(int node, int mode);
int bproc_pidnode(int pid);
int bproc_version(struct bproc_version_t *vers);
const char *bproc_strerror(int err);

/* Node attributes, named without the "bproc." prefix: "state" (the state
 * with its NUL) and "addr" (an AF_INET sockaddr). Returns the length (the
 * length needed when size is 0), or -1 with ENODATA for any other name. */
int bproc_getnodeattr(int node, char *name, void *value, int size);
int bproc_setnodeattr(int node, char *name, void *value, int size); /* ENOSYS */
int bproc_notifier(void);                                           /* ENOSYS */

/* Node sets. bproc_nodelist fills ns with every node (in node order) and
 * returns their number; bproc_nodelist_ (from a notifier fd) gives ENOSYS.
 * Neither frees what ns held before. */
int bproc_nodelist(struct bproc_node_set_t *ns);
int bproc_nodelist_(struct bproc_node_set_t *ns, int fd);
int bproc_nodeset_init(struct bproc_node_set_t *ns, int size);
int bproc_nodeset_grow(struct bproc_node_set_t *ns, int size);
void bproc_nodeset_free(struct bproc_node_set_t *ns);
int bproc_nodeset_add(struct bproc_node_set_t *ns, struct bproc_node_info_t *n);
int bproc_nodeset_append(struct bproc_node_set_t *a, struct bproc_node_set_t *b);

/* Node specs: comma-separated chunks, each adding its nodes in order
 * (duplicates kept): a number ("3", "n3", ".3", "0x3", "010" is 8), a range
 * ("2-5", or "2-" up to the highest node), "all", "master" (a record for
 * node -1, "up"), or a state with optional "all" and "not" prefixes ("up",
 * "allup", "notdown", "allnotdown"). Numbers of no node are skipped.
 * Anything else gives -1 with EINVAL. bproc_nodefilter selects from `in`
 * (an empty `in` gives an empty set), bproc_nodespec from every node. */
int bproc_nodefilter(struct bproc_node_set_t *out, struct bproc_node_set_t *in, const char *str);
int bproc_nodespec(struct bproc_node_set_t *ns, const char *str);

/* Remote processes on a node (BPROC_NODE_ANY: every node): returns their
 * number and a malloc'd array in *list (NULL when none) for the caller to
 * free. */
int bproc_proclist(int node, struct bproc_proc_info_t **list);

/* Administration: not supported yet, -1 with ENOSYS. */
int bproc_nodesetstatus(int node, char *status);
int bproc_chmod(int node, int mode);
int bproc_chown(int node, int user);
int bproc_chgrp(int node, int group);
int bproc_nodechroot(int node, char *path);
int bproc_nodereboot(int node);
int bproc_nodehalt(int node);
int bproc_nodepwroff(int node);
int bproc_nodereboot_async(int node);
int bproc_nodehalt_async(int node);
int bproc_nodepwroff_async(int node);
int bproc_nodereconnect(int node, struct sockaddr *_rem, int remsize, struct sockaddr *_loc, int locsize);

/* Processes on nodes. bproc_rfork returns the child's (global) PID in the
 * caller, 0 in the copy on the node, and -1 with errno on failure.
 * In the _io forms, io == NULL or iolen == -1 asks for the default stdio
 * forwarding (as the plain call); an io list gives -1 with ENOSYS (not
 * supported yet), more than BPROC_IO_MAX_LEN entries EINVAL. The flags of
 * the _-prefixed forms (BPROC_DUMP_*) are ignored. */
int bproc_rfork(int node);
int bproc_rfork_io(int node, struct bproc_io_t *io, int iolen);
int _bproc_rfork(int node, int flags);
int _bproc_rfork_io(int node, struct bproc_io_t *io, int iolen, int flags);
int bproc_vrfork(int nnodes, int *nodes, int *pids);
int bproc_vrfork_io(int nnodes, int *nodes, int *pids, struct bproc_io_t *io, int iolen);
int _bproc_vrfork(int nnodes, int *nodes, int *pids, int flags);
int _bproc_vrfork_io(int nnodes, int *nodes, int *pids, struct bproc_io_t *io, int iolen, int flags);

/* Move the caller itself to a node. */
int bproc_move(int node);
int bproc_move_io(int node, struct bproc_io_t *io, int iolen);
int _bproc_move(int node, int flags);
int _bproc_move_io(int node, struct bproc_io_t *io, int iolen, int flags);

/* Run a program on a node in place of the caller (which keeps its PID and
 * parent: it becomes the ghost). They return only on failure. The program
 * must exist on the node. */
int bproc_execmove(int node, const char *cmd, char *const argv[], char *const envp[]);
int bproc_execmove_io(int node, struct bproc_io_t *io, int iolen, const char *cmd, char *const argv[],
                      char *const envp[]);
int bproc_rexec(int node, const char *cmd, char *const argv[], char *const envp[]);
int bproc_rexec_io(int node, struct bproc_io_t *io, int iolen, const char *cmd, char *const argv[],
                   char *const envp[]);
/* One child per node, each with BPROC_RANK set to its index (an entry
 * BPROC_RANK=XXXXXXX in envp is filled in; without one it is added).
 * Returns nnodes; pids[i] is the child's PID or minus an errno. */
int bproc_vexecmove(int nnodes, int *nodes, int *pids, const char *cmd, char *const argv[], char *const envp[]);
int bproc_vexecmove_io(int nnodes, int *nodes, int *pids, struct bproc_io_t *io, int iolen, const char *cmd,
                       char *const argv[], char *const envp[]);
/* An exec done by the front end for a process on a node: -1 with ENOSYS. */
int bproc_execve(const char *cmd, char *const argv[], char *const envp[]);

/* VMADump (migration here uses CRIU): -1 with ENOSYS. */
int bproc_dump(int fd, int flags);
int bproc_undump(int fd);
int bproc_execdump(int fd, int flags, const char *cmd, char *const argv[], char *const envp[]);
int bproc_libclear(void);
int bproc_libadd(const char *libname);
int bproc_libdel(const char *libname);
int bproc_liblist(char **list_);

#ifdef __cplusplus
}
#endif

#endif
