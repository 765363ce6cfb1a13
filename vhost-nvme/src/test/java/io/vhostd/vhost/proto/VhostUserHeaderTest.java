package io.vhostd.vhost.proto;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

@Timeout(value = 10, unit = TimeUnit.SECONDS)
class VhostUserHeaderTest {

    @Test
    void shouldPinFlagBitsWhenComparingWithSpec() {
        assertEquals(12, VhostUserHeader.SIZE_BYTES);
        assertEquals(0x1, VhostUserHeader.VHOST_USER_VERSION);
        assertEquals(0x3, VhostUserHeader.VHOST_USER_VERSION_MASK);
        assertEquals(0x4, VhostUserHeader.VHOST_USER_REPLY_MASK);
        assertEquals(0x8, VhostUserHeader.VHOST_USER_NEED_REPLY_MASK);
        assertEquals(0xFFFF_FFF0, VhostUserHeader.VHOST_USER_RESERVED_FLAGS_MASK);
    }

    @Test
    void shouldWriteNativeOrderFieldsWhenEncoding() {
        MemorySegment buf = MemorySegment.ofArray(new byte[VhostUserHeader.SIZE_BYTES]);
        VhostUserHeader.request(24, true, 0xFFFF_FFFEL).encode(buf);
        ValueLayout.OfInt u32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.nativeOrder());
        assertEquals(24, buf.get(u32, 0));
        assertEquals(0x9, buf.get(u32, 4));
        assertEquals(0xFFFF_FFFE, buf.get(u32, 8));
        VhostUserHeader back = VhostUserHeader.decode(buf);
        assertEquals(0xFFFF_FFFEL, back.sizeBytes());
        assertTrue(back.needReply());
        assertFalse(back.isReply());
    }

    @Test
    void shouldSetVersionAndReplyWhenMakingAReply() {
        VhostUserHeader reply = VhostUserHeader.reply(1, 8);
        assertEquals(0x5, reply.flags());
        assertTrue(reply.isReply());
        assertEquals(1, reply.version());
    }

    @ParameterizedTest(name = "flags {0}")
    @CsvSource({
        "0x0, 'unsupported protocol version 0'",
        "0x2, 'unsupported protocol version 2'",
        "0x5, 'REPLY flag set on a front-end request'",
        "0x11, 'reserved flag bits set: 0x11'",
        "0x80000001, 'reserved flag bits set: 0x80000001'"
    })
    void shouldRejectRequestWhenFlagsAreWrong(String flags, String reason) {
        VhostUserHeader h = new VhostUserHeader(1, Integer.parseUnsignedInt(flags.substring(2), 16), 0);
        VhostUserProtocolException e = assertThrows(VhostUserProtocolException.class, h::checkRequest);
        assertEquals(1, e.requestId());
        assertEquals(reason, e.reason());
        assertEquals("VHOST_USER_GET_FEATURES: " + reason, e.getMessage());
    }

    @Test
    void shouldAcceptRequestWhenVersionOneWithOrWithoutNeedReply() {
        VhostUserHeader.request(2, false, 8).checkRequest();
        VhostUserHeader.request(2, true, 8).checkRequest();
    }

    @Test
    void shouldRejectSizeWhenItDoesNotFitU32() {
        assertThrows(IllegalArgumentException.class, () -> new VhostUserHeader(1, 1, 1L << 32));
        assertThrows(IllegalArgumentException.class, () -> new VhostUserHeader(1, 1, -1));
    }
}
