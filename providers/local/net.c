/* Network namespaces of the local provider: the directory they are mounted
 * in, and each one's mount. The veth pair between the node and a pod VM is
 * lib/net's (pp_veth_setup). */
#include "providers/local/local.h"

#include <errno.h>
#include <linux/magic.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "util/file.h"

int pp__local_netns_dir_prepare(const char *dir, pp_error_t *err)
{
    int rc = pp_mkdir_p(dir, 0755, NULL);
    if (rc < 0)
        return pp_error_set(err, rc, "create `%s`: %s", dir, strerror(-rc));
    /* The namespaces mounted here must reach other mount namespaces (a
     * containerized daemon's host): make the directory a shared mount point,
     * bind-mounting it on itself first when it is not one yet. */
    for (int bound = 0;; bound = 1) {
        if (mount("", dir, "none", MS_SHARED | MS_REC, NULL) == 0)
            return 0;
        if (errno != EINVAL || bound)
            return pp_error_set(err, -errno, "make `%s` a shared mount: %s", dir, strerror(errno));
        if (mount(dir, dir, "none", MS_BIND | MS_REC, NULL) < 0)
            return pp_error_set(err, -errno, "bind-mount `%s` on itself: %s", dir, strerror(errno));
    }
}

int pp__local_netns_mounted(const char *path, dev_t *dev, ino_t *ino)
{
    struct statfs sfs;
    struct stat st;
    if (statfs(path, &sfs) < 0 || (unsigned long)sfs.f_type != (unsigned long)NSFS_MAGIC)
        return 0;
    if (stat(path, &st) < 0)
        return 0;
    if (dev != NULL)
        *dev = st.st_dev;
    if (ino != NULL)
        *ino = st.st_ino;
    return 1;
}

int pp__local_netns_remove(const char *path, pp_error_t *err)
{
    /* Lazily, like `ip netns delete`: a process still holding the mount
     * point open must not make this fail; the namespace goes with its last
     * user. */
    while (pp__local_netns_mounted(path, NULL, NULL)) {
        if (umount2(path, MNT_DETACH) < 0) {
            if (errno == EINVAL)
                break;
            return pp_error_set(err, -errno, "unmount `%s`: %s", path, strerror(errno));
        }
    }
    if (unlink(path) < 0 && errno != ENOENT)
        return pp_error_set(err, -errno, "remove `%s`: %s", path, strerror(errno));
    return 0;
}
