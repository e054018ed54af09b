# A pod VM managed image built on Azure from Debian 12 (gen2); CAA's azure
# provider takes its ID as AZURE_IMAGE_ID.
#
#   packer build -var bin_dir=$PWD/build/bin -var subscription_id=... \
#     -var resource_group=... podvm/packer/azure
#
# Credentials: a service principal (client_id + client_secret, or the
# ARM_* environment of packer's azure builder), else the `az login` session
# (use_azure_cli_auth).

variable "subscription_id" {
  type        = string
  description = "Subscription the image is made in (required)."
}

variable "resource_group" {
  type        = string
  description = "Existing resource group for the managed image (required)."
}

variable "location" {
  type    = string
  default = "eastus"
}

variable "vm_size" {
  type    = string
  default = "Standard_D2as_v5"
}

variable "client_id" {
  type        = string
  default     = ""
  description = "Service principal; empty: the az CLI login."
}

variable "client_secret" {
  type      = string
  default   = ""
  sensitive = true
}

variable "tenant_id" {
  type    = string
  default = ""
}

variable "image_publisher" {
  type    = string
  default = "Debian"
}

variable "image_offer" {
  type    = string
  default = "debian-12"
}

variable "image_sku" {
  type    = string
  default = "12-gen2"
}

source "azure-arm" "podvm" {
  subscription_id    = var.subscription_id
  client_id          = var.client_id != "" ? var.client_id : null
  client_secret      = var.client_secret != "" ? var.client_secret : null
  tenant_id          = var.tenant_id != "" ? var.tenant_id : null
  use_azure_cli_auth = var.client_id == ""

  location        = var.location
  vm_size         = var.vm_size
  os_type         = "Linux"
  image_publisher = var.image_publisher
  image_offer     = var.image_offer
  image_sku       = var.image_sku

  managed_image_name                = local.image_name
  managed_image_resource_group_name = var.resource_group

  azure_tags = {
    variant = var.variant
  }
}

build {
  sources = ["source.azure-arm.podvm"]

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
  # Azure images are generalized: the builder's account and provisioning
  # state go (by the Azure agent when the base image has it).
  provisioner "shell" {
    inline = [
      "if command -v waagent >/dev/null; then sudo waagent -force -deprovision+user; else sudo cloud-init clean --logs --machine-id; fi",
      "sync",
    ]
  }
}
