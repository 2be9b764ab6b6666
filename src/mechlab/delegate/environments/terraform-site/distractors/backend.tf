terraform {
  backend "s3" {
    bucket = "atlas-terraform-state"
    key    = "docs-site/terraform.tfstate"
    region = "eu-north-1"
  }
}
