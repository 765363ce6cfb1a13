package io.vhostd.vhost.proto;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Bit numbers transcribed from vhost-user.rst "Protocol features"; every {@code *_MASK} is {@code 1 << *_BIT}. */
@Timeout(value = 10, unit = TimeUnit.SECONDS)
class VhostUserProtocolFeatureTest {

    @Test
    void shouldMatchSpecBitNumbersWhenComparingConstants() throws Exception {
        Map<String, Integer> spec = new LinkedHashMap<>();
        String[] names = {
            "MQ",
            "LOG_SHMFD",
            "RARP",
            "REPLY_ACK",
            "MTU",
            "BACKEND_REQ",
            "CROSS_ENDIAN",
            "CRYPTO_SESSION",
            "PAGEFAULT",
            "CONFIG",
            "BACKEND_SEND_FD",
            "HOST_NOTIFIER",
            "INFLIGHT_SHMFD",
            "RESET_DEVICE",
            "INBAND_NOTIFICATIONS",
            "CONFIGURE_MEM_SLOTS",
            "STATUS",
            "XEN_MMAP",
            "SHARED_OBJECT",
            "DEVICE_STATE"
        };
        for (int bit = 0; bit < names.length; bit++) {
            spec.put("VHOST_USER_PROTOCOL_F_" + names[bit], bit);
        }
        int bits = 0;
        for (Map.Entry<String, Integer> e : spec.entrySet()) {
            int bit =
                    VhostUserProtocolFeature.class.getField(e.getKey() + "_BIT").getInt(null);
            long mask = VhostUserProtocolFeature.class
                    .getField(e.getKey() + "_MASK")
                    .getLong(null);
            assertEquals(e.getValue(), bit, e.getKey());
            assertEquals(1L << bit, mask, e.getKey());
            assertEquals(e.getKey(), VhostUserProtocolFeature.name(bit));
            bits++;
        }
        assertEquals(VhostUserProtocolFeature.BIT_COUNT, bits);
        int declaredBits = 0;
        for (Field f : VhostUserProtocolFeature.class.getFields()) {
            if (Modifier.isStatic(f.getModifiers()) && f.getName().endsWith("_BIT")) {
                declaredBits++;
            }
        }
        assertEquals(bits, declaredBits, "no constant outside the spec's list");
    }

    @Test
    void shouldMatchSpecWhenComparingVirtioFeatureBits() {
        assertEquals(30, VhostUserFeature.VHOST_USER_F_PROTOCOL_FEATURES_BIT);
        assertEquals(0x4000_0000L, VhostUserFeature.VHOST_USER_F_PROTOCOL_FEATURES_MASK);
        assertEquals(26, VhostUserFeature.VHOST_F_LOG_ALL_BIT);
        assertEquals(0x400_0000L, VhostUserFeature.VHOST_F_LOG_ALL_MASK);
        assertEquals(1, VhostUserFeature.VHOST_VRING_F_LOG_MASK);
        assertEquals(0x1000, VhostUserFeature.VHOST_LOG_PAGE_BYTES);
    }

    @Test
    void shouldNameEachBitWhenDescribingAMask() {
        // qemu-storage-daemon 7.2 offers 0x8f2b (tools/vm/README.md)
        assertEquals(
                "0x8f2b[MQ,LOG_SHMFD,REPLY_ACK,BACKEND_REQ,PAGEFAULT,CONFIG,BACKEND_SEND_FD,HOST_NOTIFIER,"
                        + "CONFIGURE_MEM_SLOTS]",
                VhostUserProtocolFeature.describe(0x8f2b));
        assertEquals("0x100000[bit20]", VhostUserProtocolFeature.describe(1L << 20));
        assertEquals("bit40", VhostUserProtocolFeature.name(40));
    }
}
