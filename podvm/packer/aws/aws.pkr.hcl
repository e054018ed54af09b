# A pod VM AMI built on EC2 from Debian 12 (the Debian project's AMIs);
# CAA's aws provider takes its ID as PODVM_AMI_ID.
#
#   packer build -var bin_dir=$PWD/build/bin -var region=eu-west-1 podvm/packer/aws
#
# Credentials come the usual AWS ways (environment, profile, instance role).

variable "region" {
  type    = string
  default = "us-east-1"
}

variable "instance_type" {
  type    = string
  default = "t3.small"
}

variable "source_ami_name" {
  type        = string
  default     = "debian-12-amd64-*"
  description = "Name filter of the base AMI; the newest match is used."
}

variable "source_ami_owner" {
  type        = string
  default     = "136693071363"
  description = "Account that owns the base AMI (default: Debian's)."
}

variable "ssh_username" {
  type        = string
  default     = "admin"
  description = "Login of the base AMI (admin on Debian, ubuntu on Ubuntu)."
}

variable "volume_size" {
  type        = number
  default     = 8
  description = "Root volume size in GiB."
}

variable "subnet_id" {
  type        = string
  default     = ""
  description = "Subnet for the builder instance; empty: the default VPC."
}

source "amazon-ebs" "podvm" {
  region        = var.region
  instance_type = var.instance_type
  ami_name      = local.image_name
  subnet_id     = var.subnet_id != "" ? var.subnet_id : null
  ssh_username  = var.ssh_username

  source_ami_filter {
    filters = {
      name                = var.source_ami_name
      architecture        = "x86_64"
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = [var.source_ami_owner]
    most_recent = true
  }

  launch_block_device_mappings {
    device_name           = "/dev/xvda"
    volume_size           = var.volume_size
    volume_type           = "gp3"
    throughput            = 125
    iops                  = 3000
    delete_on_termination = true
  }

  tags = {
    Name    = local.image_name
    variant = var.variant
  }
}

build {
  sources = ["source.amazon-ebs.podvm"]

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
}
