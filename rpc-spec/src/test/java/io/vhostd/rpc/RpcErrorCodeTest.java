package io.vhostd.rpc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.HashSet;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(10)
class RpcErrorCodeTest {
    @Test
    void shouldHaveUniqueCodesAndNamesWhenEnumerated() {
        Set<Integer> codes = new HashSet<>();
        Set<String> names = new HashSet<>();
        for (RpcErrorCode c : RpcErrorCode.values()) {
            assertTrue(codes.add(c.code()), "duplicate code " + c.code());
            assertTrue(names.add(c.wireName()), "duplicate name " + c.wireName());
            assertEquals(c.name().toLowerCase(Locale.ROOT), c.wireName(), "wire name is the snake_case name");
        }
    }

    @Test
    void shouldUseJsonRpcValuesWhenCodeIsStandard() {
        // JSON-RPC 2.0 section 5.1
        assertEquals(-32700, RpcErrorCode.PARSE_ERROR.code());
        assertEquals(-32600, RpcErrorCode.INVALID_REQUEST.code());
        assertEquals(-32601, RpcErrorCode.METHOD_NOT_FOUND.code());
        assertEquals(-32602, RpcErrorCode.INVALID_PARAMS.code());
        assertEquals(-32603, RpcErrorCode.INTERNAL_ERROR.code());
        long standard = Arrays.stream(RpcErrorCode.values())
                .filter(RpcErrorCode::isStandard)
                .count();
        assertEquals(5, standard);
    }

    @Test
    void shouldStayInServerRangeWhenCodeIsServerDefined() {
        for (RpcErrorCode c : RpcErrorCode.values()) {
            if (!c.isStandard()) {
                assertTrue(c.code() >= -32099 && c.code() <= -32000, c + " outside -32099..-32000");
            }
        }
        assertFalse(RpcErrorCode.NO_SUCH_BDEV.isStandard());
    }

    @Test
    void shouldFindConstantWhenLookedUpByCodeOrName() {
        for (RpcErrorCode c : RpcErrorCode.values()) {
            assertEquals(c, RpcErrorCode.fromCode(c.code()).orElseThrow());
            assertEquals(c, RpcErrorCode.fromWireName(c.wireName()).orElseThrow());
        }
        assertTrue(RpcErrorCode.fromCode(1).isEmpty());
        assertTrue(RpcErrorCode.fromWireName("nope").isEmpty());
    }

    @Test
    void shouldMatchSpecErrorsWhenComparedWithOpenRpc() {
        Map<String, String> fromSpec = new TreeMap<>();
        for (RpcSpec.ErrorDescription e : RpcSpec.load().errors()) {
            fromSpec.put(e.name(), e.code() + " " + e.message());
        }
        Map<String, String> fromEnum = new TreeMap<>();
        for (RpcErrorCode c : RpcErrorCode.values()) {
            fromEnum.put(c.wireName(), c.code() + " " + c.defaultMessage());
        }
        assertEquals(fromEnum, fromSpec);
    }
}
