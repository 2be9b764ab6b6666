terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.40"
    }
  }
}

provider "aws" {
  region = var.region
}

variable "region" {
  type    = string
  default = "eu-north-1"
}

variable "bucket_name" {
  type        = string
  description = "Name of the bucket that holds the site"
  default     = "atlas-docs-site"
}

variable "log_retention_days" {
  type    = number
  default = 30
}

resource "aws_s3_bucket" "site" {
  bucket = var.bucket_name
  tags = {
    Project = "atlas"
    Owner   = "web-team"
  }
}

resource "aws_s3_bucket_versioning" "site" {
  bucket = aws_s3_bucket.site.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_cloudfront_distribution" "site" {
  enabled             = true
  default_root_object = "index.html"
  price_class         = "PriceClass_100"

  origin {
    domain_name = aws_s3_bucket.site.bucket_regional_domain_name
    origin_id   = "site-bucket"
  }

  default_cache_behavior {
    target_origin_id       = "site-bucket"
    viewer_protocol_policy = "redirect-to-https"
    allowed_methods        = ["GET", "HEAD"]
    cached_methods         = ["GET", "HEAD"]
    default_ttl            = 3600
  }

  tags = {
    Project = "atlas"
    Owner   = "web-team"
  }
}

output "site_domain" {
  value = aws_cloudfront_distribution.site.domain_name
}
