//! The message type ids of protocol versions 5 and 6.

use std::fmt;

macro_rules! message_types {
    ($($variant:ident = $id:literal),* $(,)?) => {
        /// A message type. Ids `0xFC00` and above are custom entries: opaque to the server,
        /// journaled and replayed as they are.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum MessageType {
            $($variant,)*
            Custom(u16),
        }

        impl MessageType {
            pub fn id(self) -> u16 {
                match self {
                    $(MessageType::$variant => $id,)*
                    MessageType::Custom(id) => id,
                }
            }

            /// `None` for an id that no known message or the custom range uses.
            pub fn from_id(id: u16) -> Option<Self> {
                match id {
                    $($id => Some(MessageType::$variant),)*
                    id if id >= CUSTOM_START => Some(MessageType::Custom(id)),
                    _ => None,
                }
            }

            fn name(self) -> &'static str {
                match self {
                    $(MessageType::$variant => stringify!($variant),)*
                    MessageType::Custom(_) => "Custom",
                }
            }
        }
    };
}

const CUSTOM_START: u16 = 0xFC00;

message_types! {
    Start = 0x0000,
    Suspension = 0x0001,
    Error = 0x0002,
    End = 0x0003,
    CommandAck = 0x0004,
    ProposeRunCompletion = 0x0005,

    InputCommand = 0x0400,
    OutputCommand = 0x0401,
    GetLazyStateCommand = 0x0402,
    SetStateCommand = 0x0403,
    ClearStateCommand = 0x0404,
    ClearAllStateCommand = 0x0405,
    GetLazyStateKeysCommand = 0x0406,
    GetEagerStateCommand = 0x0407,
    GetEagerStateKeysCommand = 0x0408,
    GetPromiseCommand = 0x0409,
    PeekPromiseCommand = 0x040A,
    CompletePromiseCommand = 0x040B,
    SleepCommand = 0x040C,
    CallCommand = 0x040D,
    OneWayCallCommand = 0x040E,
    SendSignalCommand = 0x0410,
    RunCommand = 0x0411,
    AttachInvocationCommand = 0x0412,
    GetInvocationOutputCommand = 0x0413,
    CompleteAwakeableCommand = 0x0414,

    GetLazyStateCompletionNotification = 0x8002,
    GetLazyStateKeysCompletionNotification = 0x8006,
    GetPromiseCompletionNotification = 0x8009,
    PeekPromiseCompletionNotification = 0x800A,
    CompletePromiseCompletionNotification = 0x800B,
    SleepCompletionNotification = 0x800C,
    CallCompletionNotification = 0x800D,
    CallInvocationIdCompletionNotification = 0x800E,
    RunCompletionNotification = 0x8011,
    AttachInvocationCompletionNotification = 0x8012,
    GetInvocationOutputCompletionNotification = 0x8013,
    SignalNotification = 0xFBFF,
}

impl MessageType {
    pub fn is_command(self) -> bool {
        (0x0400..0x8000).contains(&self.id())
    }

    pub fn is_notification(self) -> bool {
        (0x8000..CUSTOM_START).contains(&self.id())
    }

    pub fn is_custom(self) -> bool {
        matches!(self, MessageType::Custom(_))
    }

    /// Whether the entry belongs in the journal: commands, notifications and custom entries.
    pub fn is_journal_entry(self) -> bool {
        self.is_command() || self.is_notification() || self.is_custom()
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#06x})", self.name(), self.id())
    }
}
