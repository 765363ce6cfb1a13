/**
 * The master's JSON-RPC 2.0 server on its unix socket: {@link io.vhostd.master.rpc.RpcServer} (Vert.x, framing and
 * connection handling) over a synchronous dispatcher that checks every request against {@code rpc-spec/openrpc.json}.
 *
 * <p>Role: master, control plane. Wire format: {@code rpc-spec/spec/rpc-wire.md}. Handlers run on Vert.x worker
 * threads, never on the event loop; they reach the data plane only through queues (STYLE rule 6).
 */
package io.vhostd.master.rpc;
