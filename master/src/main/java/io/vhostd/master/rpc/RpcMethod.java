package io.vhostd.master.rpc;

import com.fasterxml.jackson.databind.JsonNode;
import io.vhostd.rpc.RpcException;

/**
 * The handler of one RPC method. Runs on a Vert.x worker thread (it may block); the same connection sends no other
 * request to the server until it returns, other connections may call concurrently.
 */
@FunctionalInterface
public interface RpcMethod {
    /**
     * Executes the method.
     *
     * @param params the request's params, already checked against the method's description in openrpc.json: always an
     *     object node (empty when the request had none), never null
     * @return the result (null is sent as JSON null)
     * @throws RpcException to answer with that error; any other exception is answered with {@code internal_error}
     */
    JsonNode invoke(JsonNode params) throws RpcException;
}
