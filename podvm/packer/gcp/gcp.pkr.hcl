# A pod VM image built on Google Compute Engine from Debian 12; CAA's gcp
# provider takes its name as PODVM_IMAGE_NAME (or the image family as
# projects/PROJECT/global/images/family/podvm-default). The user data comes
# from the instance metadata (`user-data`, base64), which process-user-data
# reads.
#
#   packer build -var bin_dir=$PWD/build/bin -var project_id=... podvm/packer/gcp
#
# Credentials: account_file (a service account key), else the application
# default credentials (gcloud auth application-default login, or the
# instance's service account).

variable "project_id" {
  type        = string
  description = "Project the builder VM and the image live in (required)."
}

variable "zone" {
  type    = string
  default = "us-central1-a"
}

variable "machine_type" {
  type    = string
  default = "e2-small"
}

variable "source_image_family" {
  type    = string
  default = "debian-12"
}

variable "source_image_project_id" {
  type    = string
  default = "debian-cloud"
}

variable "disk_size" {
  type        = number
  default     = 10
  description = "Boot disk size in GB."
}

variable "account_file" {
  type        = string
  default     = ""
  description = "Service account key file; empty: application default credentials."
}

source "googlecompute" "podvm" {
  project_id              = var.project_id
  zone                    = var.zone
  machine_type            = var.machine_type
  source_image_family     = var.source_image_family
  source_image_project_id = [var.source_image_project_id]
  disk_size               = var.disk_size
  account_file            = var.account_file != "" ? var.account_file : null
  image_name              = local.image_name
  image_family            = "${var.image_name_prefix}-${var.variant}"
  image_labels = {
    variant = var.variant
  }
  ssh_username = "packer"
}

build {
  sources = ["source.googlecompute.podvm"]

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
