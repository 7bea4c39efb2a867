# workerd serving one TrEnv guest (bench/peer/worker.js); scripts/peer-bench.sh copies the guest beside it as guest.wasm.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [(name = "guest", worker = .guestWorker)],
  sockets = [(name = "http", address = "127.0.0.1:8195", http = (), service = "guest")],
);

const guestWorker :Workerd.Worker = (
  modules = [
    (name = "worker.js", esModule = embed "worker.js"),
    (name = "guest.wasm", wasm = embed "guest.wasm"),
  ],
  compatibilityDate = "2024-09-01",
);
