# Stand-in for debian:12 where no registry serves it: the debootstrap rootfs scripts/images.sh imported as
# trenv/debian-rootfs:12, with CA certificates and the host's extra CAs (a TLS-inspecting egress proxy's),
# so apt, NuGet and npm work inside builds exactly as they do on the host.
FROM trenv/debian-rootfs:12
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY extra-ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
CMD ["bash"]
