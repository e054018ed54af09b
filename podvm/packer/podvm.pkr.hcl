# Shared by every template (each podvm/packer/<cloud>/ links it as
# podvm.pkr.hcl): which files go into a pod VM image and how. The builder VM
# gets the binaries and podvm/install-files.sh with the units uploaded, and
# runs install-files.sh on its own root, as podvm/build.sh does on the local
# image's tree; the libraries come from the base image's apt (Debian 12 or
# Ubuntu base images).

variable "bin_dir" {
  type        = string
  default     = ""
  description = "Directory with agent-protocol-forwarder, process-user-data, attestation-agent, confidential-data-hub and api-server-rest (and pp-test-agent for the test variant). Default: <repo>/build/bin."
}

variable "variant" {
  type        = string
  default     = "default"
  description = "default, or test: adds the stand-in agent pp-test-agent as kata-agent.service."
}

variable "runtime_packages" {
  type = list(string)
  # The packages of the libraries the binaries link; podvm/runtime-packages.sh
  # --direct BINARY... prints them for a build (the packer test checks that
  # this list covers them). apt adds their dependencies.
  default = [
    "iproute2", "libc6", "libcurl4", "libjansson4", "libmicrohttpd12", "libmnl0", "libnftnl11",
    "libnl-3-200", "libnl-route-3-200", "libprotobuf-c1", "libssl3", "libtss2-esys-3.0.2-0",
    "libtss2-mu0", "libtss2-rc0", "libtss2-tcti-device0", "libtss2-tctildr0", "libuv1", "zlib1g",
  ]
  description = "Base image packages with the runtime libraries of the binaries (Debian 12 names)."
}

variable "image_name_prefix" {
  type        = string
  default     = "podvm"
  description = "The image is named <prefix>-<variant>-<UTC timestamp>."
}

locals {
  # path.root is podvm/packer/<cloud>.
  podvm_dir  = "${path.root}/../.."
  bin_dir    = var.bin_dir != "" ? var.bin_dir : "${path.root}/../../../build/bin"
  binaries   = concat(["agent-protocol-forwarder", "process-user-data", "attestation-agent", "confidential-data-hub", "api-server-rest"], var.variant == "test" ? ["pp-test-agent"] : [])
  bin_files  = [for b in local.binaries : "${local.bin_dir}/${b}"]
  stage      = "/tmp/podvm-files"
  image_name = "${var.image_name_prefix}-${var.variant}-${formatdate("YYYYMMDDhhmmss", timestamp())}"

  # Run in the builder VM after the uploads below.
  install_commands = [
    "sudo DEBIAN_FRONTEND=noninteractive apt-get update -q",
    "sudo DEBIAN_FRONTEND=noninteractive apt-get install -q -y --no-install-recommends ${join(" ", var.runtime_packages)}",
    "sudo bash ${local.stage}/podvm/install-files.sh / ${local.stage}/bin${var.variant == "test" ? " --test" : ""}",
    "rm -rf ${local.stage}",
  ]
}
