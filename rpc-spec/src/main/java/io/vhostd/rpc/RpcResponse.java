package io.vhostd.rpc;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.NullNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.Iterator;
import java.util.Objects;
import java.util.Set;

/**
 * A JSON-RPC 2.0 response object (section 5): {@code {"jsonrpc": "2.0", "result": any, "id": ...}} or {@code
 * {"jsonrpc": "2.0", "error": {...}, "id": ...}}. Exactly one of {@code result} and {@code error} is set.
 *
 * @param id the id of the request answered; {@link NullNode} when it could not be determined (never Java null)
 * @param result the result (any JSON value, JSON null included) when successful, else null
 * @param error the error when failed, else null
 */
public record RpcResponse(JsonNode id, JsonNode result, RpcError error) {
    private static final Set<String> MEMBERS = Set.of("jsonrpc", "result", "error", "id");

    public RpcResponse {
        Objects.requireNonNull(id, "id");
        if ((result == null) == (error == null)) {
            throw new IllegalArgumentException("exactly one of result and error must be set");
        }
    }

    /** A successful response; a null {@code result} is sent as JSON null. */
    public static RpcResponse success(JsonNode id, JsonNode result) {
        return new RpcResponse(id, result == null ? NullNode.getInstance() : result, null);
    }

    /** An error response. */
    public static RpcResponse failure(JsonNode id, RpcError error) {
        return new RpcResponse(id, null, Objects.requireNonNull(error, "error"));
    }

    /** True for an error response. */
    public boolean isError() {
        return error != null;
    }

    /** This response as its JSON object. */
    public ObjectNode toJson() {
        ObjectNode node = Json.NODES.objectNode();
        node.put("jsonrpc", RpcRequest.VERSION);
        if (error != null) {
            node.set("error", error.toJson());
        } else {
            node.set("result", result);
        }
        node.set("id", id);
        return node;
    }

    /**
     * Reads and validates an untrusted response object.
     *
     * @throws RpcProtocolException if {@code node} is not a JSON-RPC 2.0 response object
     */
    public static RpcResponse fromJson(JsonNode node) throws RpcProtocolException {
        if (node == null || !node.isObject()) {
            throw new RpcProtocolException("malformed response: not a JSON object");
        }
        for (Iterator<String> names = node.fieldNames(); names.hasNext(); ) {
            String name = names.next();
            if (!MEMBERS.contains(name)) {
                throw new RpcProtocolException("malformed response: unknown member '" + name + "'");
            }
        }
        JsonNode version = node.get("jsonrpc");
        if (version == null || !RpcRequest.VERSION.equals(version.asText(null))) {
            throw new RpcProtocolException("malformed response: \"jsonrpc\" is not \"2.0\"");
        }
        JsonNode id = node.get("id");
        if (id == null || !(id.isTextual() || id.isIntegralNumber() || id.isNull())) {
            throw new RpcProtocolException("malformed response: missing or invalid \"id\"");
        }
        JsonNode result = node.get("result");
        JsonNode error = node.get("error");
        if ((result == null) == (error == null)) {
            throw new RpcProtocolException("malformed response: needs exactly one of \"result\" and \"error\"");
        }
        if (result != null) {
            return new RpcResponse(id, result, null);
        }
        try {
            return new RpcResponse(id, null, RpcError.fromJson(error));
        } catch (IllegalArgumentException e) {
            throw new RpcProtocolException("malformed response: " + e.getMessage(), e);
        }
    }
}
