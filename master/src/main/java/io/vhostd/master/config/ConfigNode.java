package io.vhostd.master.config;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;

/**
 * A node of the parsed YAML tree together with its key path, so that every check can name where it failed. A YAML
 * null (an empty value) counts as absent.
 */
final class ConfigNode {
    private final JsonNode node;
    private final String path;

    ConfigNode(JsonNode node, String path) {
        this.node = node;
        this.path = path;
    }

    String path() {
        return path;
    }

    /** The key path of {@code key} under this mapping. */
    String pathOf(String key) {
        return path.isEmpty() ? key : path + "." + key;
    }

    ConfigException error(String problem) {
        return new ConfigException(path.isEmpty() ? "(top level)" : path, problem);
    }

    ConfigException error(String key, String problem) {
        return new ConfigException(pathOf(key), problem);
    }

    /** Checks this node is a mapping whose keys are all in {@code allowed}. */
    ConfigNode requireMapping(Set<String> allowed) throws ConfigException {
        if (!node.isObject()) {
            throw error("must be a mapping, not " + describe(node));
        }
        for (Iterator<String> keys = node.fieldNames(); keys.hasNext(); ) {
            String key = keys.next();
            if (!allowed.contains(key)) {
                throw error(key, "unknown key (expected one of: " + String.join(", ", new TreeSet<>(allowed)) + ")");
            }
        }
        return this;
    }

    boolean has(String key) {
        JsonNode value = node.get(key);
        return value != null && !value.isNull();
    }

    /** True when {@code key} is present with YAML's null ({@code key: null}, {@code key: ~} or {@code key:}). */
    boolean isYamlNull(String key) {
        JsonNode value = node.get(key);
        return value != null && value.isNull();
    }

    /** The mapping under {@code key}, or null when absent. */
    ConfigNode child(String key) {
        return has(key) ? new ConfigNode(node.get(key), pathOf(key)) : null;
    }

    /** The elements of the sequence under {@code key}; empty when absent. */
    List<ConfigNode> list(String key) throws ConfigException {
        List<ConfigNode> items = new ArrayList<>();
        if (!has(key)) {
            return items;
        }
        JsonNode value = node.get(key);
        if (!value.isArray()) {
            throw error(key, "must be a list, not " + describe(value));
        }
        for (int i = 0; i < value.size(); i++) {
            items.add(new ConfigNode(value.get(i), pathOf(key) + "[" + i + "]"));
        }
        return items;
    }

    /** The raw value under {@code key}, or null when absent (for keys that take more than one type). */
    JsonNode value(String key) {
        return has(key) ? node.get(key) : null;
    }

    /** The string under {@code key}, or {@code fallback} when absent. */
    String string(String key, String fallback) throws ConfigException {
        if (!has(key)) {
            return fallback;
        }
        JsonNode value = node.get(key);
        if (!value.isTextual()) {
            throw error(key, "must be a string, not " + describe(value));
        }
        return value.asText();
    }

    String requiredString(String key) throws ConfigException {
        String value = string(key, null);
        if (value == null) {
            throw error(key, "missing");
        }
        if (value.isEmpty()) {
            throw error(key, "must not be empty");
        }
        return value;
    }

    /** This node as a string (for sequence elements). */
    String asString() throws ConfigException {
        if (!node.isTextual()) {
            throw error("must be a string, not " + describe(node));
        }
        return node.asText();
    }

    long longValue(String key, long fallback) throws ConfigException {
        if (!has(key)) {
            return fallback;
        }
        JsonNode value = node.get(key);
        if (!value.isIntegralNumber() || !value.canConvertToLong()) {
            throw error(key, "must be an integer, not " + describe(value));
        }
        return value.longValue();
    }

    /** An integer in {@code [min, max]}. */
    int intValue(String key, int fallback, int min, int max) throws ConfigException {
        long value = longValue(key, fallback);
        if (value < min || value > max) {
            throw error(key, "must be between " + min + " and " + max + ", not " + value);
        }
        return (int) value;
    }

    boolean bool(String key, boolean fallback) throws ConfigException {
        if (!has(key)) {
            return fallback;
        }
        JsonNode value = node.get(key);
        if (!value.isBoolean()) {
            throw error(key, "must be true or false, not " + describe(value));
        }
        return value.booleanValue();
    }

    private static String describe(JsonNode value) {
        if (value.isTextual()) {
            return "'" + value.asText() + "'";
        }
        if (value.isObject()) {
            return "a mapping";
        }
        if (value.isArray()) {
            return "a list";
        }
        return value.toString();
    }
}
