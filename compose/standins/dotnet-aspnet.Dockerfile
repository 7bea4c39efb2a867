# Stand-in for mcr.microsoft.com/dotnet/aspnet:10.0: Debian 12 and the ASP.NET Core and .NET runtimes of
# this machine's SDK (the build context holds only dotnet, host/ and shared/).
ARG BASE_IMAGE=trenv/debian:12
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libssl3 zlib1g libgcc-s1 libstdc++6 \
 && rm -rf /var/lib/apt/lists/*
COPY . /usr/share/dotnet/
RUN ln -s /usr/share/dotnet/dotnet /usr/bin/dotnet && rm -f /usr/share/dotnet/Dockerfile
ENV ASPNETCORE_HTTP_PORTS=8080 DOTNET_RUNNING_IN_CONTAINER=true
