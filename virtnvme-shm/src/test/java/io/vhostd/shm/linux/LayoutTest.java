package io.vhostd.shm.linux;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Pins every struct offset, size and ABI constant the bindings hard-code, with literal numbers taken from the x86_64
 * headers ({@code offsetof}/{@code sizeof} printed by gcc against {@code linux-libc-dev} and glibc on Debian 12).
 */
@Timeout(10)
class LayoutTest {
    @Test
    void shouldMatchIoUringSqeLayoutWhenComparedWithUapiHeader() {
        assertEquals(64, IoUring.SQE_SIZE);
        assertEquals(0, IoUring.SQE_OPCODE_OFFSET);
        assertEquals(1, IoUring.SQE_FLAGS_OFFSET);
        assertEquals(2, IoUring.SQE_IOPRIO_OFFSET);
        assertEquals(4, IoUring.SQE_FD_OFFSET);
        assertEquals(8, IoUring.SQE_OFF_OFFSET);
        assertEquals(16, IoUring.SQE_ADDR_OFFSET);
        assertEquals(24, IoUring.SQE_LEN_OFFSET);
        assertEquals(28, IoUring.SQE_OP_FLAGS_OFFSET);
        assertEquals(32, IoUring.SQE_USER_DATA_OFFSET);
        assertEquals(40, IoUring.SQE_BUF_INDEX_OFFSET);
        assertEquals(42, IoUring.SQE_PERSONALITY_OFFSET);
        assertEquals(44, IoUring.SQE_FILE_INDEX_OFFSET);
        assertEquals(48, IoUring.SQE_ADDR3_OFFSET);
    }

    @Test
    void shouldMatchIoUringCqeAndParamsLayoutWhenComparedWithUapiHeader() {
        assertEquals(16, IoUring.CQE_SIZE);
        assertEquals(0, IoUring.CQE_USER_DATA_OFFSET);
        assertEquals(8, IoUring.CQE_RES_OFFSET);
        assertEquals(12, IoUring.CQE_FLAGS_OFFSET);

        assertEquals(120, IoUring.PARAMS_SIZE);
        assertEquals(0, IoUring.PARAMS_SQ_ENTRIES_OFFSET);
        assertEquals(4, IoUring.PARAMS_CQ_ENTRIES_OFFSET);
        assertEquals(8, IoUring.PARAMS_FLAGS_OFFSET);
        assertEquals(12, IoUring.PARAMS_SQ_THREAD_CPU_OFFSET);
        assertEquals(16, IoUring.PARAMS_SQ_THREAD_IDLE_OFFSET);
        assertEquals(20, IoUring.PARAMS_FEATURES_OFFSET);
        assertEquals(24, IoUring.PARAMS_WQ_FD_OFFSET);
        assertEquals(40, IoUring.PARAMS_SQ_OFF_OFFSET);
        assertEquals(80, IoUring.PARAMS_CQ_OFF_OFFSET);

        assertEquals(0, IoUring.SQ_OFF_HEAD);
        assertEquals(4, IoUring.SQ_OFF_TAIL);
        assertEquals(8, IoUring.SQ_OFF_RING_MASK);
        assertEquals(12, IoUring.SQ_OFF_RING_ENTRIES);
        assertEquals(16, IoUring.SQ_OFF_FLAGS);
        assertEquals(20, IoUring.SQ_OFF_DROPPED);
        assertEquals(24, IoUring.SQ_OFF_ARRAY);
        assertEquals(0, IoUring.CQ_OFF_HEAD);
        assertEquals(4, IoUring.CQ_OFF_TAIL);
        assertEquals(8, IoUring.CQ_OFF_RING_MASK);
        assertEquals(12, IoUring.CQ_OFF_RING_ENTRIES);
        assertEquals(16, IoUring.CQ_OFF_OVERFLOW);
        assertEquals(20, IoUring.CQ_OFF_CQES);
        assertEquals(24, IoUring.CQ_OFF_FLAGS);
    }

    @Test
    void shouldMatchIoUringConstantsWhenComparedWithUapiHeader() {
        assertEquals(0, IoUring.IORING_OP_NOP);
        assertEquals(1, IoUring.IORING_OP_READV);
        assertEquals(2, IoUring.IORING_OP_WRITEV);
        assertEquals(3, IoUring.IORING_OP_FSYNC);
        assertEquals(17, IoUring.IORING_OP_FALLOCATE);
        assertEquals(22, IoUring.IORING_OP_READ);
        assertEquals(23, IoUring.IORING_OP_WRITE);
        assertEquals(46, IoUring.IORING_OP_URING_CMD);
        assertEquals(1, IoUring.IORING_FSYNC_DATASYNC);
        assertEquals(1, IoUring.IOSQE_FIXED_FILE);
        assertEquals(4, IoUring.IOSQE_IO_LINK);
        assertEquals(1, IoUring.IORING_ENTER_GETEVENTS);
        assertEquals(2, IoUring.IORING_ENTER_SQ_WAKEUP);
        assertEquals(1, IoUring.IORING_FEAT_SINGLE_MMAP);
        assertEquals(2, IoUring.IORING_SETUP_SQPOLL);
        assertEquals(1024, IoUring.IORING_SETUP_SQE128);
        assertEquals(2048, IoUring.IORING_SETUP_CQE32);
        assertEquals(2, IoUring.IORING_REGISTER_FILES);
        assertEquals(0x8000000L, IoUring.IORING_OFF_CQ_RING);
        assertEquals(0x10000000L, IoUring.IORING_OFF_SQES);
        assertEquals(425, IoUring.SYS_IO_URING_SETUP);
        assertEquals(426, IoUring.SYS_IO_URING_ENTER);
        assertEquals(427, IoUring.SYS_IO_URING_REGISTER);
    }

    @Test
    void shouldMatchSocketStructLayoutWhenComparedWithGlibcHeaders() {
        assertEquals(56, Socket.MSGHDR_SIZE);
        assertEquals(0, Socket.MSG_NAME_OFFSET);
        assertEquals(8, Socket.MSG_NAMELEN_OFFSET);
        assertEquals(16, Socket.MSG_IOV_OFFSET);
        assertEquals(24, Socket.MSG_IOVLEN_OFFSET);
        assertEquals(32, Socket.MSG_CONTROL_OFFSET);
        assertEquals(40, Socket.MSG_CONTROLLEN_OFFSET);
        assertEquals(48, Socket.MSG_FLAGS_OFFSET);
        assertEquals(16, Socket.CMSGHDR_SIZE);
        assertEquals(8, Socket.CMSG_LEVEL_OFFSET);
        assertEquals(12, Socket.CMSG_TYPE_OFFSET);
        assertEquals(16, Socket.cmsgLen(0));
        assertEquals(24, Socket.cmsgSpace(4));
        assertEquals(48, Socket.cmsgSpace(32));
        assertEquals(110, Socket.SOCKADDR_UN_SIZE);
        assertEquals(2, Socket.SUN_PATH_OFFSET);
        assertEquals(12, Socket.UCRED_SIZE);
        assertEquals(16, IovecArray.IOVEC_SIZE);
        assertEquals(0, IovecArray.IOV_BASE_OFFSET);
        assertEquals(8, IovecArray.IOV_LEN_OFFSET);
        assertEquals(8, Poll.POLLFD_SIZE);
        assertEquals(4, Poll.POLLFD_EVENTS_OFFSET);
        assertEquals(6, Poll.POLLFD_REVENTS_OFFSET);
    }

    @Test
    void shouldMatchStructStatLayoutWhenComparedWithGlibcHeaders() {
        assertEquals(144, Stat.STAT_SIZE);
        assertEquals(24, Stat.ST_MODE_OFFSET);
        assertEquals(40, Stat.ST_RDEV_OFFSET);
        assertEquals(48, Stat.ST_SIZE_OFFSET);
        assertEquals(56, Stat.ST_BLKSIZE_OFFSET);
    }

    @Test
    void shouldMatchFlagValuesWhenComparedWithX8664Headers() {
        assertEquals(0x4000, Fcntl.O_DIRECT);
        assertEquals(0x80000, Fcntl.O_CLOEXEC);
        assertEquals(0x1000, Fcntl.O_DSYNC);
        assertEquals(0x800, Fcntl.O_NONBLOCK);
        assertEquals(0x101000, Fcntl.O_SYNC);
        assertEquals(1033, Fcntl.F_ADD_SEALS);
        assertEquals(0x54000000, Memfd.MFD_HUGE_2MB);
        assertEquals(0x78000000, Memfd.MFD_HUGE_1GB);
        assertEquals(0x8000, Mman.MAP_POPULATE);
        assertEquals(0x40000, Mman.MAP_HUGETLB);
        assertEquals(0x4000, Socket.MSG_NOSIGNAL);
        assertEquals(0x8, Socket.MSG_CTRUNC);
        assertEquals(0x40000000, Socket.MSG_CMSG_CLOEXEC);
        assertEquals(0x80000, Socket.SOCK_CLOEXEC);
        assertEquals(17, Socket.SO_PEERCRED);
        assertEquals(0x80000, Eventfd.EFD_CLOEXEC);
        assertEquals(0x800, Eventfd.EFD_NONBLOCK);
        assertEquals(0x80081272L, Ioctl.BLKGETSIZE64);
        assertEquals(0x1268, Ioctl.BLKSSZGET);
        assertEquals(0x127b, Ioctl.BLKPBSZGET);
        assertEquals(0x1277, Ioctl.BLKDISCARD);
        assertEquals(0x127f, Ioctl.BLKZEROOUT);
        assertEquals(434, Pidfd.SYS_PIDFD_OPEN);
        assertEquals(424, Pidfd.SYS_PIDFD_SEND_SIGNAL);
    }

    @Test
    void shouldNameErrnoValuesWhenLookedUp() {
        assertEquals("EBADF", Errno.name(9));
        assertEquals("EAGAIN", Errno.name(Errno.EWOULDBLOCK));
        assertEquals("ECONNRESET", Errno.name(104));
        assertEquals("EOPNOTSUPP", Errno.name(95));
        assertEquals("EHWPOISON", Errno.name(133));
        assertEquals("E?999", Errno.name(999));
        assertEquals(38, Errno.ENOSYS);
        assertEquals(28, Errno.ENOSPC);
    }
}
