/* sys/bproc_common.h: the types and constants of the bproc-rs C API that
 * BProc 4 kept apart from sys/bproc.h. Written for bproc-rs from BProc 4's
 * documented interface; include <sys/bproc.h> rather than this file. */
#ifndef _BPROC_COMMON
#define _BPROC_COMMON

/* The first bytes of struct bproc_version_t (an initializer). */
#define BPROC_MAGIC {'B', 'P', 'r'}

/* Architectures, for struct bproc_version_t's arch. */
enum {
    BPROC_ARCH_X86 = 1,
    BPROC_ARCH_ALPHA = 2,
    BPROC_ARCH_PPC = 3,
    BPROC_ARCH_X86_64 = 4,
    BPROC_ARCH_PPC64 = 5
};
/* The one being compiled for (left undefined on others). */
#if defined(__i386__)
#define BPROC_ARCH BPROC_ARCH_X86
#elif defined(__alpha__)
#define BPROC_ARCH BPROC_ARCH_ALPHA
#elif defined(__x86_64__)
#define BPROC_ARCH BPROC_ARCH_X86_64
#elif defined(__powerpc64__)
#define BPROC_ARCH BPROC_ARCH_PPC64
#elif defined(powerpc) || defined(__powerpc__)
#define BPROC_ARCH BPROC_ARCH_PPC
#endif

/* Node attributes (bproc_getnodeattr takes the name without the prefix). */
#define BPROC_XATTR_PREFIX "bproc."
#define BPROC_STATE_XATTR "bproc.state"
#define BPROC_ADDR_XATTR "bproc.addr"
#define BPROC_XATTR_MAX_NAME_SIZE 63
#define BPROC_XATTR_MAX_VALUE_SIZE 64
#define BPROC_XATTR_MAX 32

/* Longest node state string (without its NUL). */
#define BPROC_STATE_LEN 15

/* Where a stdio descriptor of a migrated or remote process goes. */
#define BPROC_IO_MAX_LEN 16
#define BPROC_IO_FILE 0x000
#define BPROC_IO_SOCKET 0x001
#define BPROC_IO_MEMFILE 0x002
#define BPROC_IO_SEND_INFO 0x001
#define BPROC_IO_DELAY 0x002

/* BProc's own errno values. */
#define BE_BASE 300
#define BE_INVALIDNODE (BE_BASE + 0)
#define BE_NODEDOWN (BE_BASE + 1)
#define BE_SAMENODE (BE_BASE + 2)
#define BE_SLAVEDIED (BE_BASE + 3)
#define BE_INVALIDPROC (BE_BASE + 4)

struct bproc_version_t {
    char bproc_magic[3];
    uint8_t arch;
    uint32_t magic;
    char version_string[24];
};

/* One node: number, state, permissions (only the 0111 bits mean anything:
 * may run processes there), owner, group and address. */
struct bproc_node_info_t {
    int node;
    char status[BPROC_STATE_LEN + 1];
    unsigned int mode;
    unsigned int user;
    unsigned int group;
    struct sockaddr addr;
};

/* A descriptor to set up in a process started elsewhere: a file opened on
 * the node, or a socket connected back to an address. */
struct bproc_io_t {
    int fd;
    short type;
    short flags;
    union {
        struct sockaddr addr;
        struct {
            int flags;
            int mode;
            long offset;
            char name[256];
        } file;
        struct {
            void *base;
            long size;
        } mem;
    } d;
};

/* A remote process and the node it runs on. */
struct bproc_proc_info_t {
    int pid;
    int node;
};

#endif
