package io.vhostd.vhost.proto;

import java.lang.foreign.MemorySegment;

/**
 * Message framing: limits, whole-message encoding and the size rule of each {@link VhostUserPayloadKind}. No I/O:
 * the caller owns the buffer and the socket.
 */
public final class VhostUserCodec {
    /**
     * The largest payload this back-end reads (rust-vmm's {@code MAX_MSG_SIZE}). The largest legal one is far smaller
     * ({@link VhostUserMemory#MAX_SIZE_BYTES}, or a 256-byte config window); a bigger {@code size} is answered as an
     * error after its bytes have been skipped.
     */
    public static final int MAX_PAYLOAD_SIZE_BYTES = 4096;

    /** A buffer that holds any message this back-end accepts. */
    public static final int MESSAGE_BUFFER_SIZE_BYTES = VhostUserHeader.SIZE_BYTES + MAX_PAYLOAD_SIZE_BYTES;

    /** The most fds a legal front-end message carries ({@code SET_MEM_TABLE}, one per region). */
    public static final int MAX_FDS_PER_MESSAGE = VhostUserMemory.VHOST_MEMORY_BASELINE_NREGIONS;

    private VhostUserCodec() {}

    /**
     * Writes header and payload to {@code dst}.
     *
     * @param payload the payload, or {@code null} for none (the header's size must then be 0)
     * @return bytes written: {@code 12 + size}
     * @throws IllegalArgumentException if the header's size differs from the payload's or exceeds {@link
     *     #MAX_PAYLOAD_SIZE_BYTES}
     */
    public static int encode(MemorySegment dst, VhostUserHeader header, VhostUserPayload payload) {
        int payloadBytes = payload == null ? 0 : payload.sizeBytes();
        if (header.sizeBytes() != payloadBytes || payloadBytes > MAX_PAYLOAD_SIZE_BYTES) {
            throw new IllegalArgumentException(
                    "header size " + header.sizeBytes() + " but payload of " + payloadBytes + " bytes");
        }
        header.encode(dst);
        if (payload != null) {
            payload.encode(dst.asSlice(VhostUserHeader.SIZE_BYTES, payloadBytes));
        }
        return VhostUserHeader.SIZE_BYTES + payloadBytes;
    }

    /**
     * Checks the payload size against the request's {@link VhostUserPayloadKind}: exact for fixed-size kinds, at
     * least the fixed part for variable ones (their decoders check the rest).
     *
     * @throws VhostUserProtocolException if the size cannot be right
     */
    public static void checkPayloadSize(VhostUserRequest request, MemorySegment payload) {
        VhostUserPayloadKind kind = request.payload();
        long size = payload.byteSize();
        if (kind.fixedSizeBytes() >= 0) {
            if (size != kind.fixedSizeBytes()) {
                throw new VhostUserProtocolException(
                        request.id(), kind + " payload must be " + kind.fixedSizeBytes() + " bytes, got " + size);
            }
        } else if (kind == VhostUserPayloadKind.MEMORY && size < VhostUserMemory.REGIONS_OFFSET
                || kind == VhostUserPayloadKind.CONFIG && size < VhostUserConfig.HEADER_SIZE_BYTES) {
            throw new VhostUserProtocolException(request.id(), kind + " payload too short: " + size + " bytes");
        }
    }
}
