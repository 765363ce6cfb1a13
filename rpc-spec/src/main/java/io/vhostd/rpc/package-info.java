/**
 * The vhostd control plane's contract: the OpenRPC description ({@code rpc-spec/openrpc.json}, loaded by {@link
 * io.vhostd.rpc.RpcSpec}), the JSON-RPC 2.0 value types ({@link io.vhostd.rpc.RpcRequest}, {@link
 * io.vhostd.rpc.RpcResponse}, {@link io.vhostd.rpc.RpcError}, {@link io.vhostd.rpc.RpcErrorCode}), the unix-socket
 * client ({@link io.vhostd.rpc.RpcClient}) and the {@code vhostctl} command line ({@link io.vhostd.rpc.Vhostctl}).
 *
 * <p>Role: shared by the master (which serves the methods) and every client. Wire format: {@code
 * rpc-spec/spec/rpc-wire.md}.
 */
package io.vhostd.rpc;
