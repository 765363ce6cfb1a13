package io.vhostd.rpc;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.NullNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.Iterator;
import java.util.Objects;
import java.util.Set;

/**
 * A JSON-RPC 2.0 request object (section 4): {@code {"jsonrpc": "2.0", "method": string, "params": object|array?,
 * "id": string|number|null?}}.
 *
 * <p>{@code id == null} (Java null) means the member is absent: the request is a notification and gets no response.
 * An explicit JSON {@code null} id is a {@link NullNode}. {@code params == null} means the member is absent.
 *
 * @param jsonrpc always {@link #VERSION}
 * @param id the request id (a textual or numeric node, or {@link NullNode}), or null for a notification
 * @param method the method name
 * @param params an object (by-name) or array (by-position) node, or null when absent
 */
public record RpcRequest(String jsonrpc, JsonNode id, String method, JsonNode params) {
    /** The only protocol version: the value of the {@code jsonrpc} member. */
    public static final String VERSION = "2.0";

    private static final Set<String> MEMBERS = Set.of("jsonrpc", "method", "params", "id");

    public RpcRequest {
        Objects.requireNonNull(jsonrpc, "jsonrpc");
        Objects.requireNonNull(method, "method");
    }

    /** A request that expects a response. */
    public static RpcRequest of(JsonNode id, String method, JsonNode params) {
        return new RpcRequest(VERSION, Objects.requireNonNull(id, "id"), method, params);
    }

    /** A notification (no id, no response). */
    public static RpcRequest notification(String method, JsonNode params) {
        return new RpcRequest(VERSION, null, method, params);
    }

    /** True when the request has no id member: the server sends no response (JSON-RPC 2.0 section 4.1). */
    public boolean isNotification() {
        return id == null;
    }

    /** This request as its JSON object; absent members are omitted. */
    public ObjectNode toJson() {
        ObjectNode node = Json.NODES.objectNode();
        node.put("jsonrpc", jsonrpc);
        node.put("method", method);
        if (params != null) {
            node.set("params", params);
        }
        if (id != null) {
            node.set("id", id);
        }
        return node;
    }

    /**
     * Reads and validates an untrusted request object.
     *
     * @throws RpcException {@link RpcErrorCode#INVALID_REQUEST} when {@code node} is not an object, {@code jsonrpc} is
     *     not "2.0", {@code method} is not a string, {@code params} is not an object, array or null, {@code id} is not a
     *     string, an integer or null, or there is any other member
     */
    public static RpcRequest fromJson(JsonNode node) throws RpcException {
        if (node == null || !node.isObject()) {
            throw invalid("request is not a JSON object");
        }
        for (Iterator<String> names = node.fieldNames(); names.hasNext(); ) {
            String name = names.next();
            if (!MEMBERS.contains(name)) {
                throw invalid("unknown member '" + name + "'");
            }
        }
        JsonNode version = node.get("jsonrpc");
        if (version == null || !version.isTextual() || !VERSION.equals(version.asText())) {
            throw invalid("\"jsonrpc\" must be \"2.0\"");
        }
        JsonNode method = node.get("method");
        if (method == null || !method.isTextual()) {
            throw invalid("\"method\" must be a string");
        }
        JsonNode params = node.get("params");
        if (params != null && !params.isObject() && !params.isArray() && !params.isNull()) {
            throw invalid("\"params\" must be an object or an array");
        }
        JsonNode id = node.get("id");
        if (id != null && !isValidId(id)) {
            throw invalid("\"id\" must be a string, an integer or null");
        }
        return new RpcRequest(VERSION, id, method.asText(), params == null || params.isNull() ? null : params);
    }

    /**
     * The id to answer an untrusted request value with when it could not be read as a request: its {@code id} member if
     * that is a valid id, else JSON null (JSON-RPC 2.0 section 5: "If there was an error in detecting the id in the
     * Request object, it MUST be Null").
     */
    public static JsonNode responseIdOf(JsonNode node) {
        JsonNode id = node != null && node.isObject() ? node.get("id") : null;
        return id != null && isValidId(id) ? id : NullNode.getInstance();
    }

    // JSON-RPC 2.0 section 4: "Numbers SHOULD NOT contain fractional parts"; we refuse them so ids compare exactly.
    private static boolean isValidId(JsonNode id) {
        return id.isTextual() || id.isIntegralNumber() || id.isNull();
    }

    private static RpcException invalid(String why) {
        return new RpcException(RpcErrorCode.INVALID_REQUEST, "invalid request: " + why);
    }
}
