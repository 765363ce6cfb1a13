package io.vhostd.vhost.backend;

import io.vhostd.vhost.proto.VhostUserHeader;
import java.lang.foreign.MemorySegment;

/**
 * One message as {@link VhostUserConnection#receive()} read it.
 *
 * @param header the header as received (not yet checked)
 * @param payload exactly {@code header.sizeBytes()} bytes, a view of the connection's receive buffer valid until the
 *     next receive; empty when {@code payloadSkipped}
 * @param fds descriptors that came with the message (close-on-exec), in order; the receiver owns them
 * @param fdsTruncated more descriptors came than the receive buffer holds; all of them were closed
 * @param payloadSkipped the payload was larger than {@code VhostUserCodec.MAX_PAYLOAD_SIZE_BYTES} and was read and
 *     discarded
 */
public record VhostUserMessage(
        VhostUserHeader header, MemorySegment payload, int[] fds, boolean fdsTruncated, boolean payloadSkipped) {}
