"""ECR repositories (scan on push, lifecycle) and the images built from ``docker/`` and pushed
during ``pulumi up`` (pulumi-docker-build, BuildKit on the deploying machine)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("producer", "consumer", "scaler")
KEEP_IMAGES = 10


# The stack's cpuArchitecture -> the image platform; the task definitions' runtime platform
# must match it (Fargate runs linux/arm64 images on ARM64, Graviton).
PLATFORMS = {
    "x86_64": docker_build.Platform.LINUX_AMD64,
    "arm64": docker_build.Platform.LINUX_ARM64,
}


@dataclass
class ImagesArgs:
    version: str  # the image tag: the git commit when deployed from a checkout
    architecture: str = "x86_64"  # or arm64 (BuildKit cross-builds it with QEMU if needed)


class Images(pulumi.ComponentResource):
    def __init__(self, name: str, args: ImagesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kinesis-ingest:images:Images", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        token = aws.ecr.get_authorization_token_output(opts=pulumi.InvokeOutputOptions(parent=self))
        self.repositories: dict[str, aws.ecr.Repository] = {}
        self.refs: dict[str, pulumi.Output[str]] = {}
        lifecycle = json.dumps(
            {
                "rules": [
                    {
                        "rulePriority": 1,
                        "description": f"keep the last {KEEP_IMAGES} images",
                        "selection": {
                            "tagStatus": "any",
                            "countType": "imageCountMoreThan",
                            "countNumber": KEEP_IMAGES,
                        },
                        "action": {"type": "expire"},
                    }
                ]
            }
        )
        for service in SERVICES:
            repo = aws.ecr.Repository(
                f"{name}-{service}",
                image_scanning_configuration={"scan_on_push": True},
                image_tag_mutability="MUTABLE",  # tasks run images by digest, not by tag
                encryption_configurations=[{"encryption_type": "AES256"}],
                force_delete=True,  # destroy removes the images too
                opts=child,
            )
            aws.ecr.LifecyclePolicy(
                f"{name}-{service}", repository=repo.name, policy=lifecycle, opts=child
            )
            tag = pulumi.Output.concat(repo.repository_url, ":", args.version)
            image = docker_build.Image(
                f"{name}-{service}",
                context={"location": str(ROOT)},
                dockerfile={"location": str(ROOT / "docker" / f"{service}.Dockerfile")},
                platforms=[PLATFORMS[args.architecture]],
                push=True,
                tags=[tag],
                registries=[
                    {
                        "address": repo.repository_url,
                        "username": token.user_name,
                        "password": token.password,
                    }
                ],
                opts=child,
            )
            self.repositories[service] = repo
            self.refs[service] = pulumi.Output.concat(repo.repository_url, "@", image.digest)
        self.register_outputs({s: r for s, r in self.refs.items()})
