/* The pod VM's end of the pod network (design.md §4 VXLAN): the pod's
 * interface, with its IP, MAC, routes and neighbours, in the pod network
 * namespace, tunnelled to the worker node. Runs once, at start-up, before
 * the loop. */
#ifndef APF_PODNET_H
#define APF_PODNET_H

#include <jansson.h>

#include "util/error.h"

/* Decodes the config's `pod-network` object and sets the network up in the
 * namespace at `netns_path` (`-pod-namespace`): one under /run/netns is
 * made when missing; any other must exist. */
int apf_podnet_setup(const json_t *pod_network, const char *netns_path, pp_error_t *err);

#endif
