# Stand-in for mcr.microsoft.com/dotnet/sdk:10.0: Debian 12 and this machine's own .NET SDK (the build
# context is its install directory). Same layout as the canonical image: /usr/share/dotnet, dotnet on PATH.
ARG BASE_IMAGE=trenv/debian:12
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libicu72 libssl3 zlib1g libgcc-s1 libstdc++6 git curl \
 && rm -rf /var/lib/apt/lists/*
COPY . /usr/share/dotnet/
RUN ln -s /usr/share/dotnet/dotnet /usr/bin/dotnet && rm -f /usr/share/dotnet/Dockerfile
# The host checks certificate revocation offline too: its egress proxy answers no CRL or OCSP requests.
ENV DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_GENERATE_ASPNET_CERTIFICATE=false NUGET_CERT_REVOCATION_MODE=offline
