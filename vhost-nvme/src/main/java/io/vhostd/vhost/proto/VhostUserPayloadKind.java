package io.vhostd.vhost.proto;

/**
 * The payload shapes of vhost-user.rst "Payload", with their wire sizes. Names follow the specification's headings;
 * the records that decode them are named after the C structs.
 */
public enum VhostUserPayloadKind {
    /** No payload: size 0. */
    NONE(0),
    /** "A single 64-bit integer" ({@link VhostUserU64}). */
    U64(VhostUserU64.SIZE_BYTES),
    /**
     * The {@code u64} of {@code SET_VRING_KICK/CALL/ERR}: vring index in bits 0-7, invalid-fd flag in bit 8
     * ({@link VhostUserVringFd}).
     */
    VRING_FD(VhostUserVringFd.SIZE_BYTES),
    /** "A vring state description" ({@link VhostUserVringState}). */
    VRING_STATE(VhostUserVringState.SIZE_BYTES),
    /** "A vring address description" ({@link VhostUserVringAddr}). */
    VRING_ADDR(VhostUserVringAddr.SIZE_BYTES),
    /** "Multiple Memory regions description" ({@link VhostUserMemory}): 8 + 32 × regions bytes. */
    MEMORY(-1),
    /** "Single memory region description" ({@link VhostUserMemRegMsg}). */
    MEM_REG(VhostUserMemRegMsg.SIZE_BYTES),
    /** "Log description" ({@link VhostUserLog}). */
    LOG(VhostUserLog.SIZE_BYTES),
    /** "An IOTLB message": {@code struct vhost_iotlb_msg}, 3 × u64 + 2 × u8, padded to 32 bytes. */
    IOTLB(32),
    /** "Virtio device config space" ({@link VhostUserConfig}): 12 + size bytes. */
    CONFIG(-1),
    /** "Vring area description": u64, size, offset. */
    VRING_AREA(24),
    /** "Inflight description" ({@link VhostUserInflight}). */
    INFLIGHT(VhostUserInflight.SIZE_BYTES),
    /** "VhostUserShared": a 16-byte UUID. */
    SHARED(16),
    /** "Device state transfer parameters": transfer direction u32, migration phase u32. */
    DEVICE_STATE(8),
    /** The crypto session description of {@code VHOST_USER_CREATE_CRYPTO_SESSION} (variable, device specific). */
    CRYPTO_SESSION(-1);

    private final int fixedSizeBytes;

    VhostUserPayloadKind(int fixedSizeBytes) {
        this.fixedSizeBytes = fixedSizeBytes;
    }

    /** Exact wire size in bytes, or -1 for a variable-size payload (the record's decoder checks it). */
    public int fixedSizeBytes() {
        return fixedSizeBytes;
    }
}
