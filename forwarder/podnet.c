/* The pod VM's end of the pod network (podnet.h). */
#include "podnet.h"

#include <errno.h>
#include <stdlib.h>

#include "net/net.h"
#include "util/cleanup.h"
#include "util/log.h"

int apf_podnet_setup(const json_t *pod_network, const char *netns_path, pp_error_t *err)
{
    cleanup_free pp_podnet_t *pn = calloc(1, sizeof(*pn));
    if (pn == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    int r = pp_podnet_from_json(pod_network, pn, err);
    if (r < 0)
        return r;
    r = pp_vm_tunnel_setup(NULL, pp_netns_name_or_path(netns_path), pn, err);
    if (r < 0)
        return r;
    char ip[32];
    PP_INFO("apf", "pod network: `%s` %s in `%s`, vxlan %u to the worker node", pn->interface,
            pp_ipv4_prefix_format(&pn->pod_ip, ip, sizeof(ip)), netns_path, pn->vxlan_id);
    return 0;
}
