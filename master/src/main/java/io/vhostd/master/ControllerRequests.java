package io.vhostd.master;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.vhostd.master.config.ControllerConfig;
import io.vhostd.rpc.RpcErrorCode;
import io.vhostd.rpc.RpcException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * Controllers created at run time (issue #5): the params of {@code vhost_create_blk_controller} and the controller's
 * registry record ({@code master/spec/registry.md} "Controller records"), both validated as strictly as a {@code
 * controllers:} entry of the configuration. Pure: no I/O.
 */
final class ControllerRequests {
    /** Registry record keys: those of a configuration entry. */
    static final Set<String> RECORD_KEYS =
            Set.of("name", "type", "bdev", "socket", "num_queues", "queue_size_max", "serial", "read_only");

    private static final Pattern NAME = Pattern.compile("[A-Za-z0-9._:-]{1,64}");

    private ControllerRequests() {}

    /**
     * Validates {@code vhost_create_blk_controller} params (already type-checked against openrpc.json).
     *
     * @param runDir where a relative or absent {@code socket} goes ({@code <run_dir>/<ctrlr>.sock})
     * @param bdevReadOnly whether the bdev named by {@code dev_name} is read-only (the default of {@code readonly})
     * @throws RpcException {@code invalid_params} naming the param
     */
    static ControllerConfig fromParams(JsonNode params, String runDir, boolean bdevReadOnly) throws RpcException {
        String name = params.path("ctrlr").asText();
        String bdev = params.path("dev_name").asText();
        String socket = params.hasNonNull("socket") ? params.get("socket").asText() : name + ".sock";
        int numQueues =
                params.hasNonNull("num_queues") ? params.get("num_queues").asInt() : 1;
        Boolean readOnly =
                params.hasNonNull("readonly") ? params.get("readonly").asBoolean() : null;
        String serial = params.hasNonNull("serial") ? params.get("serial").asText() : null;
        try {
            return build(
                    name,
                    bdev,
                    socket,
                    numQueues,
                    ControllerConfig.DEFAULT_QUEUE_SIZE_MAX,
                    serial,
                    readOnly,
                    runDir,
                    bdevReadOnly,
                    true);
        } catch (IllegalArgumentException e) {
            throw new RpcException(RpcErrorCode.INVALID_PARAMS, "invalid params: " + e.getMessage());
        }
    }

    /**
     * Reads a registry record back (untrusted: the file may be from another version or damaged).
     *
     * @throws IllegalArgumentException naming the field that is wrong
     */
    static ControllerConfig fromRecord(JsonNode record, String runDir, boolean bdevReadOnly) {
        if (record == null || !record.isObject()) {
            throw new IllegalArgumentException("record is not an object");
        }
        for (var it = record.fieldNames(); it.hasNext(); ) {
            String key = it.next();
            if (!RECORD_KEYS.contains(key) && !key.equals(io.vhostd.master.registry.PersistentRegistry.SEQ_FIELD)) {
                throw new IllegalArgumentException(key + ": unknown field");
            }
        }
        if (!ControllerConfig.TYPE_VHOST_USER_BLK.equals(record.path("type").asText())) {
            throw new IllegalArgumentException("type: not " + ControllerConfig.TYPE_VHOST_USER_BLK);
        }
        return build(
                text(record, "name"),
                text(record, "bdev"),
                text(record, "socket"),
                integer(record, "num_queues"),
                integer(record, "queue_size_max"),
                text(record, "serial"),
                bool(record, "read_only"),
                runDir,
                bdevReadOnly,
                false);
    }

    /** The registry record of {@code c}: the keys of a configuration entry, resolved values. */
    static ObjectNode toRecord(ControllerConfig c) {
        ObjectNode o = JsonNodeFactory.instance.objectNode();
        o.put("name", c.name());
        o.put("type", c.type());
        o.put("bdev", c.bdev());
        o.put("socket", c.socket());
        o.put("num_queues", c.numQueues());
        o.put("queue_size_max", c.queueSizeMax());
        o.put("serial", c.serial());
        o.put("read_only", c.readOnly());
        return o;
    }

    private static ControllerConfig build(
            String name,
            String bdev,
            String socket,
            int numQueues,
            int queueSizeMax,
            String serial,
            Boolean readOnly,
            String runDir,
            boolean bdevReadOnly,
            boolean rpcNames) {
        String nameKey = rpcNames ? "ctrlr" : "name";
        if (!NAME.matcher(name).matches()) {
            throw new IllegalArgumentException(
                    nameKey + ": '" + name + "' must be 1 to 64 characters of A-Z a-z 0-9 . _ : -");
        }
        if (bdev.isEmpty()) {
            throw new IllegalArgumentException((rpcNames ? "dev_name" : "bdev") + ": must not be empty");
        }
        if (socket.isEmpty()) {
            throw new IllegalArgumentException("socket: must not be empty");
        }
        String path = Path.of(runDir).resolve(socket).normalize().toString();
        int length = path.getBytes(StandardCharsets.UTF_8).length;
        if (length > ControllerConfig.MAX_SOCKET_PATH_BYTES) {
            throw new IllegalArgumentException("socket: '" + path + "' is " + length + " bytes, longer than the "
                    + ControllerConfig.MAX_SOCKET_PATH_BYTES + " a unix socket path may have (sun_path)");
        }
        if (numQueues < 1 || numQueues > ControllerConfig.MAX_NUM_QUEUES) {
            throw new IllegalArgumentException(
                    "num_queues: " + numQueues + " is not in 1.." + ControllerConfig.MAX_NUM_QUEUES);
        }
        if (queueSizeMax < 1 || queueSizeMax > ControllerConfig.MAX_QUEUE_SIZE || Integer.bitCount(queueSizeMax) != 1) {
            throw new IllegalArgumentException("queue_size_max: " + queueSizeMax + " is not a power of two in 1.."
                    + ControllerConfig.MAX_QUEUE_SIZE);
        }
        String resolvedSerial = serial == null ? truncateUtf8(name, ControllerConfig.SERIAL_MAX_BYTES) : serial;
        if (resolvedSerial.getBytes(StandardCharsets.UTF_8).length > ControllerConfig.SERIAL_MAX_BYTES) {
            throw new IllegalArgumentException(
                    "serial: longer than " + ControllerConfig.SERIAL_MAX_BYTES + " bytes (VIRTIO_BLK_ID_BYTES)");
        }
        boolean ro = readOnly == null ? bdevReadOnly : readOnly;
        if (bdevReadOnly && !ro) {
            throw new IllegalArgumentException(
                    (rpcNames ? "readonly" : "read_only") + ": false, but bdev '" + bdev + "' is read-only");
        }
        return new ControllerConfig(
                name, ControllerConfig.TYPE_VHOST_USER_BLK, bdev, path, numQueues, queueSizeMax, resolvedSerial, ro);
    }

    private static String text(JsonNode record, String key) {
        JsonNode v = record.get(key);
        if (v == null || !v.isTextual()) {
            throw new IllegalArgumentException(key + ": missing or not a string");
        }
        return v.asText();
    }

    private static int integer(JsonNode record, String key) {
        JsonNode v = record.get(key);
        if (v == null || !v.isIntegralNumber() || !v.canConvertToInt()) {
            throw new IllegalArgumentException(key + ": missing or not an integer");
        }
        return v.intValue();
    }

    private static boolean bool(JsonNode record, String key) {
        JsonNode v = record.get(key);
        if (v == null || !v.isBoolean()) {
            throw new IllegalArgumentException(key + ": missing or not a boolean");
        }
        return v.booleanValue();
    }

    /** The longest prefix of {@code s} whose UTF-8 encoding fits {@code maxBytes}, never splitting a character. */
    static String truncateUtf8(String s, int maxBytes) {
        int bytes = 0;
        int end = 0;
        while (end < s.length()) {
            int cp = s.codePointAt(end);
            int n = new String(Character.toChars(cp)).getBytes(StandardCharsets.UTF_8).length;
            if (bytes + n > maxBytes) {
                break;
            }
            bytes += n;
            end += Character.charCount(cp);
        }
        return s.substring(0, end);
    }
}
