package io.vhostd.rpc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

@Timeout(10)
class RpcSpecTest {
    private static final RpcSpec SPEC = RpcSpec.load();

    @Test
    void shouldDescribeServedMethodsWhenLoadedFromClasspath() {
        // other methods are added by their issues; these must stay
        assertTrue(
                SPEC.methodNames()
                        .containsAll(Set.of(
                                "bdev_get_bdevs",
                                "bdev_file_create",
                                "bdev_null_create",
                                "bdev_malloc_create",
                                "bdev_nvme_attach_controller",
                                "bdev_delete",
                                "nvme_get_controllers",
                                "framework_get_hugepages",
                                "vhost_get_controllers",
                                "vhost_create_blk_controller",
                                "vhost_delete_controller",
                                "slave_get_slaves",
                                "bdev_get_iostat",
                                "bdev_reset_iostat",
                                "bdev_enable_histogram",
                                "bdev_get_histogram",
                                "trace_start",
                                "trace_stop",
                                "trace_get_events",
                                "rpc_get_methods")),
                SPEC.methodNames().toString());
        assertEquals("1.2.6", SPEC.document().path("openrpc").asText());
        assertFalse(SPEC.version().isEmpty());
    }

    @Test
    void shouldPackageTheModuleFileWhenBuilt() throws Exception {
        // one copy: the classpath resource is rpc-spec/openrpc.json itself
        Path source = Path.of("openrpc.json");
        if (Files.exists(source)) {
            assertEquals(Json.MAPPER.readTree(source.toFile()), SPEC.document());
        }
    }

    @Test
    void shouldDocumentEveryMethodAndParamWhenLoaded() {
        for (RpcSpec.Method m : SPEC.methods()) {
            // SPDK's convention: <area>[_<kind>]_<verb>[_<object>], snake_case (bdev_get_bdevs, bdev_null_create,
            // bdev_nvme_attach_controller, bdev_delete)
            assertTrue(
                    m.name()
                            .matches(
                                    "[a-z]+(_[a-z]+)?_(get|set|create|delete|start|stop|attach|detach|upgrade|reset|enable)(_[a-z_]+)?"),
                    m.name());
            assertFalse(m.summary().isBlank(), m.name());
            assertFalse(m.description().isBlank(), m.name());
            assertFalse(m.resultDescription().isBlank(), m.name());
            for (RpcSpec.Param p : m.params()) {
                assertFalse(p.description().isBlank(), m.name() + "." + p.name());
                assertTrue(p.schema().has("type") || p.schema().has("$ref"), m.name() + "." + p.name());
            }
            for (String error : m.errorNames()) {
                assertTrue(RpcErrorCode.fromWireName(error).isPresent(), m.name() + " names unknown error " + error);
            }
        }
    }

    @Test
    void shouldNameEveryResultFieldWhenMethodListsObjects() {
        JsonNode bdev = SPEC.document().path("components").path("schemas").path("Bdev");
        for (String field :
                new String[] {"name", "type", "path", "size_bytes", "block_size", "num_blocks", "read_only", "engine"
                }) {
            assertTrue(bdev.path("properties").has(field), "Bdev." + field);
        }
        JsonNode controller = SPEC.document().path("components").path("schemas").path("Controller");
        for (String field : new String[] {"name", "type", "bdev", "socket", "num_queues", "slave_pid", "sessions"}) {
            assertTrue(controller.path("properties").has(field), "Controller." + field);
        }
    }

    static Stream<Arguments> goodParams() {
        return Stream.of(
                Arguments.of("bdev_get_bdevs", null, "{}"),
                Arguments.of("bdev_get_bdevs", "{}", "{}"),
                Arguments.of("bdev_get_bdevs", "{\"name\":\"disk0\"}", "{\"name\":\"disk0\"}"),
                Arguments.of("vhost_get_controllers", "{\"name\":\"c\"}", "{\"name\":\"c\"}"),
                Arguments.of(
                        "bdev_null_create",
                        "{\"name\":\"n\",\"num_blocks\":8,\"block_size\":4096}",
                        "{\"name\":\"n\",\"num_blocks\":8,\"block_size\":4096}"),
                Arguments.of(
                        "bdev_file_create",
                        "{\"name\":\"f\",\"filename\":\"/x.img\",\"size_bytes\":4096,\"direct\":true}",
                        "{\"name\":\"f\",\"filename\":\"/x.img\",\"size_bytes\":4096,\"direct\":true}"),
                Arguments.of("bdev_delete", "{\"name\":\"f\"}", "{\"name\":\"f\"}"),
                Arguments.of("framework_get_hugepages", null, "{}"),
                Arguments.of("rpc_get_methods", "null", "{}"));
    }

    @ParameterizedTest
    @MethodSource("goodParams")
    void shouldAcceptParamsWhenTheyMatchTheSpec(String method, String params, String normalised) throws Exception {
        JsonNode in = params == null ? null : Json.MAPPER.readTree(params);
        assertEquals(Json.MAPPER.readTree(normalised), SPEC.checkParams(method, in));
    }

    static Stream<Arguments> badParams() {
        return Stream.of(
                Arguments.of("bdev_get_bdevs", "[\"disk0\"]", RpcErrorCode.INVALID_PARAMS, "by name"),
                Arguments.of("bdev_get_bdevs", "{\"name\":5}", RpcErrorCode.INVALID_PARAMS, "'name' must be a string"),
                Arguments.of("bdev_get_bdevs", "{\"nmae\":\"x\"}", RpcErrorCode.INVALID_PARAMS, "unknown param 'nmae'"),
                Arguments.of("rpc_get_methods", "{\"x\":1}", RpcErrorCode.INVALID_PARAMS, "takes: no params"),
                Arguments.of(
                        "bdev_null_create",
                        "{\"name\":\"n\",\"num_blocks\":8,\"block_size\":100}",
                        RpcErrorCode.INVALID_PARAMS,
                        "'block_size' must be one of"),
                Arguments.of(
                        "bdev_malloc_create",
                        "{\"name\":\"n\",\"num_blocks\":0,\"block_size\":512}",
                        RpcErrorCode.INVALID_PARAMS,
                        "'num_blocks' must be at least 1"),
                Arguments.of(
                        "bdev_malloc_create",
                        "{\"name\":\"n\",\"block_size\":512}",
                        RpcErrorCode.INVALID_PARAMS,
                        "missing required param 'num_blocks'"),
                Arguments.of("bdev_delete", "{}", RpcErrorCode.INVALID_PARAMS, "missing required param 'name'"),
                Arguments.of("bdev_nope", "{}", RpcErrorCode.METHOD_NOT_FOUND, "bdev_nope"));
    }

    @ParameterizedTest
    @MethodSource("badParams")
    void shouldRejectParamsWhenTheyBreakTheSpec(String method, String params, RpcErrorCode code, String says)
            throws Exception {
        RpcException e = assertThrows(RpcException.class, () -> SPEC.checkParams(method, Json.MAPPER.readTree(params)));
        assertEquals(code.code(), e.error().code());
        assertTrue(e.error().message().contains(says), e.error().message());
    }

    @Test
    void shouldCheckRequiredEnumAndRangeWhenSchemaSaysSo() throws Exception {
        RpcSpec spec = RpcSpec.parse(Json.MAPPER.readTree("""
                {"openrpc":"1.2.6","info":{"title":"t","version":"1"},"methods":[
                  {"name":"x_set_y","summary":"s","description":"d","params":[
                    {"name":"n","description":"d","required":true,"schema":{"type":"integer","minimum":1,"maximum":64}},
                    {"name":"k","description":"d","schema":{"type":"string","enum":["a","b"]}}],
                   "result":{"name":"r","description":"d","schema":{}}}],
                 "components":{"errors":{}}}
                """));
        assertEquals(Set.of("x_set_y"), spec.methodNames());
        spec.checkParams("x_set_y", Json.MAPPER.readTree("{\"n\":64,\"k\":\"a\"}"));
        for (String bad : new String[] {"{}", "{\"n\":0}", "{\"n\":65}", "{\"n\":1.5}", "{\"n\":1,\"k\":\"c\"}"}) {
            RpcException e =
                    assertThrows(RpcException.class, () -> spec.checkParams("x_set_y", Json.MAPPER.readTree(bad)), bad);
            assertEquals(RpcErrorCode.INVALID_PARAMS.code(), e.error().code(), bad);
        }
    }

    @Test
    void shouldFailLoudlyWhenDocumentMalformed() throws Exception {
        assertThrows(
                IllegalArgumentException.class,
                () -> RpcSpec.parse(Json.MAPPER.readTree("{\"info\":{\"version\":\"1\"},\"methods\":[{}]}")));
        assertThrows(IllegalArgumentException.class, () -> RpcSpec.parse(Json.MAPPER.readTree("{\"info\":{}}")));
    }
}
