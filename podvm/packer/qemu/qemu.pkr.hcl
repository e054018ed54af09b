# A pod VM image built with QEMU from a Debian 12 cloud image: a qcow2 for
# libvirt or any KVM host. The builder VM gets its login from a NoCloud seed
# served over packer's HTTP server (http/); the password is locked and
# cloud-init reset before the image is saved.
#
#   packer build -var bin_dir=$PWD/build/bin podvm/packer/qemu

variable "base_image_url" {
  type        = string
  default     = "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2"
  description = "qcow2 cloud image to start from (with cloud-init)."
}

variable "base_image_checksum" {
  type        = string
  default     = "file:https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS"
  description = "Checksum of the base image: type:value, or file:URL of a checksum list."
}

variable "output_directory" {
  type    = string
  default = "output-podvm-qemu"
}

variable "disk_size" {
  type        = string
  default     = "4G"
  description = "Virtual size of the image's disk."
}

variable "accelerator" {
  type        = string
  default     = "kvm"
  description = "kvm, or tcg where there is no KVM (much slower)."
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
  http_directory   = "${path.root}/http"
  qemuargs         = [["-smbios", "type=1,serial=ds=nocloud-net;s=http://{{ .HTTPIP }}:{{ .HTTPPort }}/"]]
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
  provisioner "shell" {
    inline = [
      "sudo passwd -l debian",
      "sudo rm -f /etc/ssh/sshd_config.d/50-cloud-init.conf",
      "sudo cloud-init clean --logs --machine-id",
    ]
  }
}
