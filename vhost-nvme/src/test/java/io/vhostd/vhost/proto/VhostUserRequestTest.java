package io.vhostd.vhost.proto;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Checks the request tables against QEMU {@code docs/interop/vhost-user.rst} (commit f6b615b52d1d). The expected
 * values below are transcribed from the specification text, not from the code: names and ids from "Front-end message
 * types" / "Back-end message types", the fd list and the reply list from "Communication", the per-message ":reply
 * payload:" fields.
 */
@Timeout(value = 10, unit = TimeUnit.SECONDS)
class VhostUserRequestTest {

    /** "Front-end message types": name → (":id:", ":reply payload:"). */
    private static final Map<String, Object[]> FRONT_END = new LinkedHashMap<>();

    static {
        spec("VHOST_USER_GET_FEATURES", 1, "u64");
        spec("VHOST_USER_SET_FEATURES", 2, "N/A");
        spec("VHOST_USER_GET_PROTOCOL_FEATURES", 15, "u64");
        spec("VHOST_USER_SET_PROTOCOL_FEATURES", 16, "N/A");
        spec("VHOST_USER_SET_OWNER", 3, "N/A");
        spec("VHOST_USER_RESET_OWNER", 4, "N/A");
        spec("VHOST_USER_SET_MEM_TABLE", 5, "(postcopy only) multiple memory regions description");
        spec("VHOST_USER_SET_LOG_BASE", 6, "N/A");
        spec("VHOST_USER_SET_LOG_FD", 7, "N/A");
        spec("VHOST_USER_SET_VRING_NUM", 8, "N/A");
        spec("VHOST_USER_SET_VRING_ADDR", 9, "N/A");
        spec("VHOST_USER_SET_VRING_BASE", 10, "N/A");
        spec("VHOST_USER_GET_VRING_BASE", 11, "vring descriptor index/indices");
        spec("VHOST_USER_SET_VRING_KICK", 12, "N/A");
        spec("VHOST_USER_SET_VRING_CALL", 13, "N/A");
        spec("VHOST_USER_SET_VRING_ERR", 14, "N/A");
        spec("VHOST_USER_GET_QUEUE_NUM", 17, "u64");
        spec("VHOST_USER_SET_VRING_ENABLE", 18, "N/A");
        spec("VHOST_USER_SEND_RARP", 19, "N/A");
        spec("VHOST_USER_NET_SET_MTU", 20, "N/A");
        spec("VHOST_USER_SET_BACKEND_REQ_FD", 21, "N/A");
        spec("VHOST_USER_IOTLB_MSG", 22, "u64");
        spec("VHOST_USER_SET_VRING_ENDIAN", 23, "N/A");
        spec("VHOST_USER_GET_CONFIG", 24, "virtio device config space");
        spec("VHOST_USER_SET_CONFIG", 25, "N/A");
        spec("VHOST_USER_CREATE_CRYPTO_SESSION", 26, "crypto session description");
        spec("VHOST_USER_CLOSE_CRYPTO_SESSION", 27, "N/A");
        spec("VHOST_USER_POSTCOPY_ADVISE", 28, "userfault fd");
        spec("VHOST_USER_POSTCOPY_LISTEN", 29, "N/A");
        spec("VHOST_USER_POSTCOPY_END", 30, "u64");
        spec("VHOST_USER_GET_INFLIGHT_FD", 31, "N/A");
        spec("VHOST_USER_SET_INFLIGHT_FD", 32, "N/A");
        spec("VHOST_USER_GPU_SET_SOCKET", 33, "N/A");
        spec("VHOST_USER_RESET_DEVICE", 34, "N/A");
        spec("VHOST_USER_VRING_KICK", 35, "N/A");
        spec("VHOST_USER_GET_MAX_MEM_SLOTS", 36, "u64");
        spec("VHOST_USER_ADD_MEM_REG", 37, "single memory region description");
        spec("VHOST_USER_REM_MEM_REG", 38, "single memory region description");
        spec("VHOST_USER_SET_STATUS", 39, "N/A");
        spec("VHOST_USER_GET_STATUS", 40, "u64");
        spec("VHOST_USER_GET_SHARED_OBJECT", 41, "dmabuf fd");
        spec("VHOST_USER_SET_DEVICE_STATE_FD", 42, "u64");
        spec("VHOST_USER_CHECK_DEVICE_STATE", 43, "u64");
    }

    private static void spec(String name, int id, String replyPayload) {
        FRONT_END.put(name, new Object[] {id, replyPayload});
    }

    /** "Communication": "There are several messages that the front-end sends with file descriptors" (name → "if"). */
    private static final Map<String, String> SPEC_FD_LIST = new LinkedHashMap<>();

    static {
        SPEC_FD_LIST.put("VHOST_USER_ADD_MEM_REG", null);
        SPEC_FD_LIST.put("VHOST_USER_SET_MEM_TABLE", null);
        SPEC_FD_LIST.put("VHOST_USER_SET_LOG_BASE", "VHOST_USER_PROTOCOL_F_LOG_SHMFD");
        SPEC_FD_LIST.put("VHOST_USER_SET_LOG_FD", null);
        SPEC_FD_LIST.put("VHOST_USER_SET_VRING_KICK", null);
        SPEC_FD_LIST.put("VHOST_USER_SET_VRING_CALL", null);
        SPEC_FD_LIST.put("VHOST_USER_SET_VRING_ERR", null);
        SPEC_FD_LIST.put("VHOST_USER_SET_BACKEND_REQ_FD", null);
        SPEC_FD_LIST.put("VHOST_USER_SET_INFLIGHT_FD", "VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD");
        SPEC_FD_LIST.put("VHOST_USER_SET_DEVICE_STATE_FD", null);
    }

    /** "Communication": "Most of the requests don't require replies. Here is a list of the ones that do". */
    private static final Map<String, String> SPEC_REPLY_LIST = new LinkedHashMap<>();

    static {
        SPEC_REPLY_LIST.put("VHOST_USER_GET_FEATURES", null);
        SPEC_REPLY_LIST.put("VHOST_USER_GET_PROTOCOL_FEATURES", null);
        SPEC_REPLY_LIST.put("VHOST_USER_GET_VRING_BASE", null);
        SPEC_REPLY_LIST.put("VHOST_USER_SET_LOG_BASE", "VHOST_USER_PROTOCOL_F_LOG_SHMFD");
        SPEC_REPLY_LIST.put("VHOST_USER_GET_INFLIGHT_FD", "VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD");
    }

    @Test
    void shouldMatchSpecNamesAndIdsWhenComparingFrontEndTable() {
        assertEquals(FRONT_END.size(), VhostUserRequest.values().length, "one enum constant per spec message");
        for (Map.Entry<String, Object[]> e : FRONT_END.entrySet()) {
            VhostUserRequest r = VhostUserRequest.valueOf(e.getKey());
            assertEquals((int) e.getValue()[0], r.id(), e.getKey());
            assertEquals(r, VhostUserRequest.fromId(r.id()));
        }
        assertEquals(43, VhostUserRequest.MAX_ID);
    }

    @Test
    void shouldListTheSpecFdMessagesWhenAskedWhichCarryFds() {
        Set<String> carrying = Arrays.stream(VhostUserRequest.values())
                .filter(VhostUserRequest::carriesFds)
                .map(Enum::name)
                .collect(Collectors.toCollection(TreeSet::new));
        Set<String> expected = new TreeSet<>(SPEC_FD_LIST.keySet());
        // its own entry: "Sets the GPU protocol socket file descriptor, which is passed as ancillary data"
        expected.add("VHOST_USER_GPU_SET_SOCKET");
        assertEquals(expected, carrying);
        for (Map.Entry<String, String> e : SPEC_FD_LIST.entrySet()) {
            VhostUserRequest r = VhostUserRequest.valueOf(e.getKey());
            assertEquals(e.getValue(), featureName(r.fdFeatureBit()), "fd condition of " + r);
        }
    }

    @Test
    void shouldReplyAsTheSpecListsWhenComparingReplyRules() {
        for (Map.Entry<String, String> e : SPEC_REPLY_LIST.entrySet()) {
            VhostUserRequest r = VhostUserRequest.valueOf(e.getKey());
            assertTrue(r.reply() != VhostUserRequest.Reply.NONE, r + " replies");
            assertEquals(e.getValue(), featureName(r.replyFeatureBit()), "reply condition of " + r);
        }
        for (VhostUserRequest r : VhostUserRequest.values()) {
            String specReply = (String) FRONT_END.get(r.name())[1];
            boolean postcopyOnly = r == VhostUserRequest.VHOST_USER_SET_MEM_TABLE
                    || r == VhostUserRequest.VHOST_USER_ADD_MEM_REG
                    || r == VhostUserRequest.VHOST_USER_REM_MEM_REG;
            boolean listedInCommunication = SPEC_REPLY_LIST.containsKey(r.name());
            boolean specReplies = !specReply.equals("N/A") && !postcopyOnly || listedInCommunication;
            assertEquals(specReplies, r.reply() != VhostUserRequest.Reply.NONE, "reply of " + r + ": " + specReply);
        }
    }

    @Test
    void shouldReplyToSetLogBaseOnlyWhenLogShmfdNegotiated() {
        VhostUserRequest r = VhostUserRequest.VHOST_USER_SET_LOG_BASE;
        assertFalse(r.repliesWith(0));
        assertTrue(r.repliesWith(VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_LOG_SHMFD_MASK));
        assertEquals(VhostUserRequest.Fds.NONE, r.fdsWith(0));
        assertEquals(
                VhostUserRequest.Fds.ONE, r.fdsWith(VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_LOG_SHMFD_MASK));
        assertTrue(VhostUserRequest.VHOST_USER_GET_FEATURES.repliesWith(0));
        assertFalse(VhostUserRequest.VHOST_USER_SET_FEATURES.repliesWith(-1L));
    }

    @Test
    void shouldKeepTheFeatureQueriesLegalWhenNoOwnerYet() {
        // QEMU 7.2 sends these before VHOST_USER_SET_OWNER (tools/vm/README.md "Backend reconnect")
        for (VhostUserRequest r : new VhostUserRequest[] {
            VhostUserRequest.VHOST_USER_GET_FEATURES,
            VhostUserRequest.VHOST_USER_GET_PROTOCOL_FEATURES,
            VhostUserRequest.VHOST_USER_SET_PROTOCOL_FEATURES,
            VhostUserRequest.VHOST_USER_GET_QUEUE_NUM,
            VhostUserRequest.VHOST_USER_GET_MAX_MEM_SLOTS,
            VhostUserRequest.VHOST_USER_SET_BACKEND_REQ_FD,
            VhostUserRequest.VHOST_USER_SET_OWNER,
        }) {
            assertFalse(r.needsOwner(), r.name());
        }
        assertTrue(VhostUserRequest.VHOST_USER_SET_MEM_TABLE.needsOwner());
        assertTrue(VhostUserRequest.VHOST_USER_SET_VRING_CALL.needsOwner());
    }

    @Test
    void shouldUseCurrentNamesWhenARequestWasRenamed() {
        assertEquals("VHOST_USER_SET_SLAVE_REQ_FD", VhostUserRequest.VHOST_USER_SET_BACKEND_REQ_FD.previousName());
        for (VhostUserRequest r : VhostUserRequest.values()) {
            assertFalse(r.name().contains("SLAVE"), r.name());
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {0, 44, 99, -1, Integer.MAX_VALUE, Integer.MIN_VALUE})
    void shouldReturnNullWhenIdIsUnknown(int id) {
        assertNull(VhostUserRequest.fromId(id));
        assertTrue(VhostUserRequest.nameOf(id).startsWith("unknown request "));
    }

    @Test
    void shouldMatchSpecWhenComparingBackEndTable() {
        Map<String, Integer> spec = new LinkedHashMap<>();
        spec.put("VHOST_USER_BACKEND_IOTLB_MSG", 1);
        spec.put("VHOST_USER_BACKEND_CONFIG_CHANGE_MSG", 2);
        spec.put("VHOST_USER_BACKEND_VRING_HOST_NOTIFIER_MSG", 3);
        spec.put("VHOST_USER_BACKEND_VRING_CALL", 4);
        spec.put("VHOST_USER_BACKEND_VRING_ERR", 5);
        spec.put("VHOST_USER_BACKEND_SHARED_OBJECT_ADD", 6);
        spec.put("VHOST_USER_BACKEND_SHARED_OBJECT_REMOVE", 7);
        spec.put("VHOST_USER_BACKEND_SHARED_OBJECT_LOOKUP", 8);
        assertEquals(spec.size(), VhostUserBackendRequest.values().length);
        for (Map.Entry<String, Integer> e : spec.entrySet()) {
            VhostUserBackendRequest r = VhostUserBackendRequest.valueOf(e.getKey());
            assertEquals(e.getValue(), r.id());
            assertEquals(r, VhostUserBackendRequest.fromId(r.id()));
            if (r.id() <= 5) {
                assertEquals(e.getKey().replace("BACKEND", "SLAVE"), r.previousName());
            }
        }
        assertNull(VhostUserBackendRequest.fromId(0));
        assertNull(VhostUserBackendRequest.fromId(9));
    }

    @Test
    void shouldHaveFdCapacityForEveryRuleWhenRulesAreListed() {
        for (VhostUserRequest r : VhostUserRequest.values()) {
            assertNotNull(r.fds());
            assertTrue(r.fds().maxFds() <= VhostUserCodec.MAX_FDS_PER_MESSAGE, r.name());
        }
    }

    private static String featureName(int bit) {
        return bit == VhostUserProtocolFeature.NO_FEATURE ? null : VhostUserProtocolFeature.name(bit);
    }
}
