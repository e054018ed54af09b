# A pod VM image for IBM Cloud VPC. IBM Cloud imports qcow2 files as VPC
# custom images, and packer 1.6 (Debian's) has no IBM Cloud builder, so this
# builds the qcow2 with the QEMU builder from a Debian 12 cloud image
# (cloud-init, which VPC instances need, stays) and leaves the import to the
# ibmcloud CLI:
#
#   packer build -var bin_dir=$PWD/build/bin podvm/packer/ibmcloud
#   ibmcloud cos upload --bucket BUCKET --key podvm.qcow2 --file output-podvm-ibmcloud/<name>.qcow2
#   ibmcloud is image-create NAME --file cos://REGION/BUCKET/podvm.qcow2 \
#     --os-name debian-12-amd64
#
# CAA's ibmcloud provider takes the custom image's ID as IBMCLOUD_PODVM_IMAGE_ID.

variable "base_image_url" {
  type    = string
  default = "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2"
}

variable "base_image_checksum" {
  type        = string
  default     = "file:https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS"
  description = "Checksum of the base image: type:value, or file:URL of a checksum list."
}

variable "output_directory" {
  type    = string
  default = "output-podvm-ibmcloud"
}

variable "disk_size" {
  type        = string
  default     = "10G"
  description = "Virtual size of the image, the smallest boot volume it can have."
}

variable "accelerator" {
  type    = string
  default = "kvm"
}

source "qemu" "podvm" {
  iso_url          = var.base_image_url
  iso_checksum     = var.base_image_checksum
  disk_image       = true
  format           = "qcow2"
  disk_size        = var.disk_size
  disk_compression = true
  disk_interface   = "virtio"
  net_device       = "virtio-net"
  accelerator      = var.accelerator
  cpus             = 2
  memory           = 2048
  headless         = true
  output_directory = var.output_directory
  vm_name          = "${local.image_name}.qcow2"
  # The same NoCloud seed as the qemu template.
  http_directory = "${path.root}/../qemu/http"
  qemuargs       = [["-smbios", "type=1,serial=ds=nocloud-net;s=http://{{ .HTTPIP }}:{{ .HTTPPort }}/"]]
  # Only for the builder VM's session; locked before the image is saved.
  ssh_username     = "debian"
  ssh_password     = "podvm-build"
  ssh_timeout      = "15m"
  shutdown_command = "sudo shutdown -P now"
}

build {
  sources = ["source.qemu.podvm"]

  provisioner "shell" {
    inline = ["mkdir -p ${local.stage}/bin ${local.stage}/podvm"]
  }
  provisioner "file" {
    sources     = local.bin_files
    destination = "${local.stage}/bin/"
  }
  provisioner "file" {
    sources     = ["${local.podvm_dir}/install-files.sh", "${local.podvm_dir}/systemd", "${local.podvm_dir}/test"]
    destination = "${local.stage}/podvm/"
  }
  provisioner "shell" {
    inline = local.install_commands
  }
  # VPC instances get their keys and settings from cloud-init at first boot.
  provisioner "shell" {
    inline = [
      "sudo passwd -l debian",
      "sudo rm -f /etc/ssh/sshd_config.d/50-cloud-init.conf",
      "sudo cloud-init clean --logs --machine-id",
    ]
  }
}
