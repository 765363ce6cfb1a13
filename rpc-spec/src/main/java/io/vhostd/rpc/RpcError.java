package io.vhostd.rpc;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.Objects;
import java.util.Optional;

/**
 * A JSON-RPC 2.0 error object (section 5.1): {@code {"code": int, "message": string, "data": any?}}. vhostd's own
 * errors always carry {@code data.name}, the {@link RpcErrorCode#wireName() snake_case name} of the code.
 *
 * @param code the error code (see {@link RpcErrorCode})
 * @param message one sentence saying what failed, never null
 * @param data extra structured data, or null when absent
 */
public record RpcError(int code, String message, JsonNode data) {
    public RpcError {
        Objects.requireNonNull(message, "message");
    }

    /** An error with {@code data = {"name": code.wireName()}}. */
    public static RpcError of(RpcErrorCode code, String message) {
        return of(code, message, null);
    }

    /**
     * An error whose data is {@code extraData} (may be null) plus {@code "name": code.wireName()}; {@code extraData} is
     * copied, not modified.
     */
    public static RpcError of(RpcErrorCode code, String message, ObjectNode extraData) {
        ObjectNode data = extraData == null ? Json.NODES.objectNode() : extraData.deepCopy();
        data.put("name", code.wireName());
        return new RpcError(code.code(), message, data);
    }

    /**
     * The error's name: {@code data.name} when it is a string, else the name of the {@link RpcErrorCode} with this code,
     * else {@code "error"}.
     */
    public String name() {
        if (data != null && data.path("name").isTextual()) {
            return data.get("name").asText();
        }
        return errorCode().map(RpcErrorCode::wireName).orElse("error");
    }

    /** The named code this error carries, if vhostd defines it. */
    public Optional<RpcErrorCode> errorCode() {
        return RpcErrorCode.fromCode(code);
    }

    /** This error as its JSON object ({@code data} omitted when null). */
    public ObjectNode toJson() {
        ObjectNode node = Json.NODES.objectNode();
        node.put("code", code);
        node.put("message", message);
        if (data != null) {
            node.set("data", data);
        }
        return node;
    }

    /**
     * Reads an error object.
     *
     * @throws IllegalArgumentException if {@code node} is not an object with an integer {@code code} (in int range) and
     *     a string {@code message}
     */
    public static RpcError fromJson(JsonNode node) {
        if (node == null || !node.isObject()) {
            throw new IllegalArgumentException("error is not an object");
        }
        JsonNode code = node.get("code");
        if (code == null || !code.isIntegralNumber() || !code.canConvertToInt()) {
            throw new IllegalArgumentException("error.code is not an int");
        }
        JsonNode message = node.get("message");
        if (message == null || !message.isTextual()) {
            throw new IllegalArgumentException("error.message is not a string");
        }
        return new RpcError(code.intValue(), message.asText(), node.get("data"));
    }
}
