//! Thread priority: helper threads that must not take the CPU from the
//! receive and send loops when it is short.

/// Lowers the calling thread's scheduling priority to nice `nice` (0 is the
/// default, 19 the last; Linux keeps it per thread, so the rest of the
/// process keeps its own). Raising it needs `CAP_SYS_NICE`; an error leaves
/// the priority as it was.
pub fn lower_thread_priority(nice: i32) -> std::io::Result<()> {
    crate::sys::set_thread_nice(nice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_calling_thread_is_lowered() {
        let main_nice = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let nice_of = |stat: &str| -> i32 {
            // Field 19 (nice), counted after the parenthesised command name.
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            after.split(' ').nth(16).unwrap().parse().unwrap()
        };
        let before = nice_of(&main_nice);
        let lowered = std::thread::spawn(move || {
            lower_thread_priority(before.max(5)).unwrap();
            nice_of(&std::fs::read_to_string("/proc/thread-self/stat").unwrap())
        })
        .join()
        .unwrap();
        assert_eq!(lowered, before.max(5));
        assert_eq!(nice_of(&std::fs::read_to_string("/proc/thread-self/stat").unwrap()), before);
    }
}
