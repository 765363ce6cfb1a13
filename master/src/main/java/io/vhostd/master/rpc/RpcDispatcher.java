package io.vhostd.master.rpc;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.NullNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.vhostd.rpc.RpcError;
import io.vhostd.rpc.RpcErrorCode;
import io.vhostd.rpc.RpcException;
import io.vhostd.rpc.RpcRequest;
import io.vhostd.rpc.RpcResponse;
import io.vhostd.rpc.RpcSpec;
import java.util.Map;

/**
 * Answers JSON-RPC 2.0 request values synchronously: validates each request (JSON-RPC 2.0 section 4, then the params
 * against openrpc.json), runs its handler on the calling thread, and builds the response. No I/O.
 */
final class RpcDispatcher {
    private static final System.Logger LOG = System.getLogger(RpcDispatcher.class.getName());

    private final RpcSpec spec;
    private final Map<String, RpcMethod> methods;
    private final int maxBatchRequests;

    RpcDispatcher(RpcSpec spec, Map<String, RpcMethod> methods, int maxBatchRequests) {
        this.spec = spec;
        this.methods = Map.copyOf(methods);
        this.maxBatchRequests = maxBatchRequests;
    }

    /**
     * Answers one request value: an object (one request) or an array (a batch, JSON-RPC 2.0 section 6).
     *
     * @return the response object or array, or null when nothing is to be sent (notifications only)
     */
    JsonNode dispatch(JsonNode value) {
        if (!value.isArray()) {
            return answer(value);
        }
        // JSON-RPC 2.0 section 6: an empty batch is one Invalid Request, not an empty array
        if (value.isEmpty()) {
            return error(NullNode.getInstance(), RpcErrorCode.INVALID_REQUEST, "invalid request: empty batch");
        }
        // untrusted input: a 1 MiB batch of tiny requests would otherwise cost a response each
        if (value.size() > maxBatchRequests) {
            return error(
                    NullNode.getInstance(),
                    RpcErrorCode.INVALID_REQUEST,
                    "invalid request: batch of " + value.size() + " requests exceeds " + maxBatchRequests);
        }
        ArrayNode responses = JsonNodeFactory.instance.arrayNode();
        for (JsonNode element : value) {
            JsonNode response = answer(element);
            if (response != null) {
                responses.add(response);
            }
        }
        // JSON-RPC 2.0 section 6: a batch of notifications gets nothing back, not an empty array
        return responses.isEmpty() ? null : responses;
    }

    /** Answers one element: a request object, or anything else (then Invalid Request). */
    private ObjectNode answer(JsonNode node) {
        RpcRequest request;
        try {
            request = RpcRequest.fromJson(node);
        } catch (RpcException e) {
            // JSON-RPC 2.0 section 5: an invalid request is answered even without an id (with id null)
            return RpcResponse.failure(RpcRequest.responseIdOf(node), e.error()).toJson();
        }
        JsonNode result;
        try {
            JsonNode params = spec.checkParams(request.method(), request.params());
            RpcMethod method = methods.get(request.method());
            if (method == null) {
                throw new RpcException(RpcErrorCode.METHOD_NOT_FOUND, "no method named '" + request.method() + "'");
            }
            result = method.invoke(params);
        } catch (RpcException e) {
            return request.isNotification()
                    ? null
                    : RpcResponse.failure(request.id(), e.error()).toJson();
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.ERROR, "RPC " + request.method() + " failed", e);
            return request.isNotification()
                    ? null
                    : error(request.id(), RpcErrorCode.INTERNAL_ERROR, request.method() + " failed: " + e);
        }
        // JSON-RPC 2.0 section 4.1: the server MUST NOT reply to a notification
        return request.isNotification()
                ? null
                : RpcResponse.success(request.id(), result).toJson();
    }

    static ObjectNode error(JsonNode id, RpcErrorCode code, String message) {
        return RpcResponse.failure(id, RpcError.of(code, message)).toJson();
    }
}
