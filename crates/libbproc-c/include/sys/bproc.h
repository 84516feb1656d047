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

#ifdef __cplusplus
extern "C" {
#endif

/* Cluster and node information. */
int bproc_numnodes(void);
int bproc_currnode(void);
int bproc_nodestatus(int node, char *status, int len);
int bproc_nodeinfo(int node, struct bproc_node_info_t *info);
int bproc_access(int node, int mode);
int bproc_pidnode(int pid);
int bproc_version(struct bproc_version_t *vers);
const char *bproc_strerror(int err);

/* Processes on nodes. bproc_rfork returns the child's (global) PID in the
 * caller, 0 in the copy on the node, and -1 with errno on failure. */
int bproc_rfork(int node);
int bproc_vrfork(int nnodes, int *nodes, int *pids);

/* Run a program on a node in place of the caller (which keeps its PID and
 * parent: it becomes the ghost). They return only on failure. The program
 * must exist on the node. */
int bproc_execmove(int node, const char *cmd, char *const argv[], char *const envp[]);
int bproc_rexec(int node, const char *cmd, char *const argv[], char *const envp[]);
/* One child per node, each with BPROC_RANK set to its index (an entry
 * BPROC_RANK=XXXXXXX in envp is filled in; without one it is added).
 * Returns nnodes; pids[i] is the child's PID or minus an errno. */
int bproc_vexecmove(int nnodes, int *nodes, int *pids, const char *cmd, char *const argv[], char *const envp[]);

#ifdef __cplusplus
}
#endif

#endif
