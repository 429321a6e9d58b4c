//! The client's terminal: its size, for `-t` containers (`run`, `create`).

nix::ioctl_read_bad!(tiocgwinsz, nix::libc::TIOCGWINSZ, nix::libc::winsize);

/// The size of the terminal on stdout as `(rows, cols)`, if stdout is a terminal.
pub fn terminal_size() -> Option<(u16, u16)> {
    use std::os::fd::AsRawFd;
    let mut size = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let fd = std::io::stdout().as_raw_fd();
    // SAFETY: TIOCGWINSZ writes exactly one `winsize` into `size`, a valid, exclusively
    // borrowed local; on a non-terminal fd the call fails with ENOTTY and writes nothing.
    unsafe { tiocgwinsz(fd, &mut size) }.ok()?;
    (size.ws_row > 0 && size.ws_col > 0).then_some((size.ws_row, size.ws_col))
}
