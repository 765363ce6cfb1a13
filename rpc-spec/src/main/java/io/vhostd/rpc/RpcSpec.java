package io.vhostd.rpc;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeSet;

/**
 * The OpenRPC 1.2 description of the methods vhostd serves, {@code rpc-spec/openrpc.json}, as packaged on the classpath
 * at {@value #RESOURCE}. The document is normative: the master registers exactly its methods, checks every request's
 * params against it ({@link #checkParams}), and {@code vhostctl methods} prints its descriptions.
 *
 * <p>Immutable and thread-safe.
 */
public final class RpcSpec {
    /** Classpath location of the packaged {@code openrpc.json}. */
    public static final String RESOURCE = "/io/vhostd/rpc/openrpc.json";

    private static final String SCHEMA_REF_PREFIX = "#/components/schemas/";
    private static final String ERROR_REF_PREFIX = "#/components/errors/";

    /**
     * One by-name parameter of a method (OpenRPC "Content Descriptor Object").
     *
     * @param name parameter name, the key in the params object
     * @param description what it means
     * @param required whether the params object must contain it
     * @param schema its JSON Schema (possibly a {@code $ref})
     */
    public record Param(String name, String description, boolean required, JsonNode schema) {}

    /**
     * One method (OpenRPC "Method Object").
     *
     * @param name method name, {@code <area>_<verb>_<object>} in snake_case (SPDK's convention)
     * @param summary one line
     * @param description full description
     * @param params the by-name parameters, in document order
     * @param resultName name of the result content descriptor
     * @param resultDescription what the result holds
     * @param resultSchema JSON Schema of the result
     * @param errorNames {@code error.data.name} of the method-specific errors it may answer with
     */
    public record Method(
            String name,
            String summary,
            String description,
            List<Param> params,
            String resultName,
            String resultDescription,
            JsonNode resultSchema,
            List<String> errorNames) {
        public Method {
            params = List.copyOf(params);
            errorNames = List.copyOf(errorNames);
        }

        /** The parameter with this name, if the method takes it. */
        public Optional<Param> param(String paramName) {
            return params.stream().filter(p -> p.name().equals(paramName)).findFirst();
        }
    }

    /**
     * One error object of {@code components.errors}.
     *
     * @param name the snake_case name ({@code data.name})
     * @param code the JSON-RPC error code
     * @param message the generic message
     */
    public record ErrorDescription(String name, int code, String message) {}

    private final JsonNode document;
    private final String version;
    private final Map<String, Method> methods;
    private final List<ErrorDescription> errors;

    private RpcSpec(JsonNode document) {
        this.document = document.deepCopy();
        this.version = text(document.path("info"), "version", "info");
        Map<String, Method> byName = new LinkedHashMap<>();
        for (JsonNode m : array(document, "methods", "")) {
            Method method = parseMethod(m);
            if (byName.put(method.name(), method) != null) {
                throw new IllegalArgumentException("openrpc.json: duplicate method " + method.name());
            }
        }
        this.methods = Collections.unmodifiableMap(byName);
        List<ErrorDescription> errorList = new ArrayList<>();
        JsonNode errorNodes = document.path("components").path("errors");
        for (Map.Entry<String, JsonNode> e : errorNodes.properties()) {
            JsonNode code = e.getValue().path("code");
            if (!code.canConvertToInt()) {
                throw new IllegalArgumentException("openrpc.json: components.errors." + e.getKey() + ".code");
            }
            errorList.add(new ErrorDescription(
                    e.getKey(), code.intValue(), text(e.getValue(), "message", "components.errors." + e.getKey())));
        }
        this.errors = List.copyOf(errorList);
    }

    /**
     * Loads the packaged description ({@value #RESOURCE}).
     *
     * @throws IllegalStateException if it is missing or malformed (a build fault)
     */
    public static RpcSpec load() {
        try (InputStream in = RpcSpec.class.getResourceAsStream(RESOURCE)) {
            if (in == null) {
                throw new IllegalStateException("classpath resource " + RESOURCE + " is missing");
            }
            return parse(Json.MAPPER.readTree(in));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + RESOURCE, e);
        }
    }

    /**
     * Reads a description from its JSON document.
     *
     * @throws IllegalArgumentException if a method, param or error lacks a required member
     */
    public static RpcSpec parse(JsonNode document) {
        return new RpcSpec(document);
    }

    /** {@code info.version} of the document. */
    public String version() {
        return version;
    }

    /** Names of all methods described, sorted. */
    public Set<String> methodNames() {
        return Collections.unmodifiableSet(new TreeSet<>(methods.keySet()));
    }

    /** All methods, in document order. */
    public List<Method> methods() {
        return List.copyOf(methods.values());
    }

    /** The method with this name, if described. */
    public Optional<Method> method(String name) {
        return Optional.ofNullable(methods.get(name));
    }

    /** The error objects of {@code components.errors}, in document order. */
    public List<ErrorDescription> errors() {
        return errors;
    }

    /** A copy of the whole document. */
    public JsonNode document() {
        return document.deepCopy();
    }

    /**
     * Checks untrusted params of a request for {@code methodName} against the method's description: by-name only, no
     * unknown names, every required param present, each value of its schema's {@code type} (and {@code enum}, {@code
     * minimum}, {@code maximum} when given).
     *
     * @param params the request's params: an object, or null when absent
     * @return the params as an object (empty when absent), never null
     * @throws RpcException {@link RpcErrorCode#METHOD_NOT_FOUND} if the method is not described; {@link
     *     RpcErrorCode#INVALID_PARAMS} naming the offending param otherwise
     */
    public ObjectNode checkParams(String methodName, JsonNode params) throws RpcException {
        Method method = methods.get(methodName);
        if (method == null) {
            throw new RpcException(RpcErrorCode.METHOD_NOT_FOUND, "no method named '" + methodName + "'");
        }
        if (params == null || params.isNull()) {
            params = Json.NODES.objectNode();
        }
        if (!params.isObject()) {
            throw invalidParams(methodName + " takes its params by name: params must be an object");
        }
        for (Map.Entry<String, JsonNode> e : params.properties()) {
            Optional<Param> param = method.param(e.getKey());
            if (param.isEmpty()) {
                throw invalidParams(
                        "unknown param '" + e.getKey() + "' (" + methodName + " takes: " + paramList(method) + ")");
            }
            String problem = checkValue(resolve(param.get().schema()), e.getValue());
            if (problem != null) {
                throw invalidParams("param '" + e.getKey() + "' " + problem);
            }
        }
        for (Param p : method.params()) {
            if (p.required() && !params.has(p.name())) {
                throw invalidParams("missing required param '" + p.name() + "'");
            }
        }
        return (ObjectNode) params;
    }

    private JsonNode resolve(JsonNode schema) {
        JsonNode ref = schema.get("$ref");
        if (ref != null && ref.asText().startsWith(SCHEMA_REF_PREFIX)) {
            JsonNode target = document.path("components")
                    .path("schemas")
                    .path(ref.asText().substring(SCHEMA_REF_PREFIX.length()));
            return target.isMissingNode() ? schema : target;
        }
        return schema;
    }

    /** Returns null when {@code value} fits {@code schema}, else what is wrong ("must be a string"). */
    private static String checkValue(JsonNode schema, JsonNode value) {
        JsonNode type = schema.get("type");
        if (type != null) {
            List<String> types = new ArrayList<>();
            if (type.isArray()) {
                type.forEach(t -> types.add(t.asText()));
            } else {
                types.add(type.asText());
            }
            if (types.stream().noneMatch(t -> hasType(value, t))) {
                return "must be "
                        + String.join(
                                " or ", types.stream().map(RpcSpec::article).toList());
            }
        }
        JsonNode allowed = schema.get("enum");
        if (allowed != null && allowed.isArray()) {
            boolean found = false;
            for (JsonNode a : allowed) {
                found |= a.equals(value);
            }
            if (!found) {
                return "must be one of " + allowed;
            }
        }
        if (value.isNumber()) {
            JsonNode min = schema.get("minimum");
            if (min != null && value.decimalValue().compareTo(min.decimalValue()) < 0) {
                return "must be at least " + min;
            }
            JsonNode max = schema.get("maximum");
            if (max != null && value.decimalValue().compareTo(max.decimalValue()) > 0) {
                return "must be at most " + max;
            }
        }
        return null;
    }

    private static boolean hasType(JsonNode value, String type) {
        return switch (type) {
            case "string" -> value.isTextual();
            case "integer" -> value.isIntegralNumber();
            case "number" -> value.isNumber();
            case "boolean" -> value.isBoolean();
            case "object" -> value.isObject();
            case "array" -> value.isArray();
            case "null" -> value.isNull();
            default -> true;
        };
    }

    private static String article(String type) {
        return switch (type) {
            case "integer", "object", "array" -> "an " + type;
            case "null" -> "null";
            default -> "a " + type;
        };
    }

    private static String paramList(Method method) {
        return method.params().isEmpty()
                ? "no params"
                : String.join(", ", method.params().stream().map(Param::name).toList());
    }

    private static RpcException invalidParams(String why) {
        return new RpcException(RpcErrorCode.INVALID_PARAMS, "invalid params: " + why);
    }

    private static Method parseMethod(JsonNode m) {
        String name = text(m, "name", "methods[]");
        String where = "methods." + name;
        List<Param> params = new ArrayList<>();
        for (JsonNode p : array(m, "params", where)) {
            String paramName = text(p, "name", where + ".params[]");
            params.add(new Param(
                    paramName,
                    text(p, "description", where + ".params." + paramName),
                    p.path("required").asBoolean(false),
                    p.path("schema")));
        }
        JsonNode result = m.path("result");
        List<String> errorNames = new ArrayList<>();
        for (JsonNode e : m.path("errors")) {
            String ref = e.path("$ref").asText();
            if (!ref.startsWith(ERROR_REF_PREFIX)) {
                throw new IllegalArgumentException(
                        "openrpc.json: " + where + ".errors: only $refs to " + ERROR_REF_PREFIX);
            }
            errorNames.add(ref.substring(ERROR_REF_PREFIX.length()));
        }
        return new Method(
                name,
                text(m, "summary", where),
                text(m, "description", where),
                params,
                text(result, "name", where + ".result"),
                text(result, "description", where + ".result"),
                result.path("schema"),
                errorNames);
    }

    private static String text(JsonNode node, String field, String where) {
        JsonNode value = node.get(field);
        if (value == null || !value.isTextual()) {
            throw new IllegalArgumentException("openrpc.json: " + join(where, field) + " must be a string");
        }
        return value.asText();
    }

    private static JsonNode array(JsonNode node, String field, String where) {
        JsonNode value = node.get(field);
        if (value == null || !value.isArray()) {
            throw new IllegalArgumentException("openrpc.json: " + join(where, field) + " must be an array");
        }
        return value;
    }

    private static String join(String where, String field) {
        return where.isEmpty() ? field : where + "." + field;
    }
}
