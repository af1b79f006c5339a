// One schema for both backends: every type here means the same on SQLite and PostgreSQL.

diesel::table! {
    users (id) {
        id -> BigInt,
        username -> Nullable<Text>,
        username_key -> Nullable<Text>,
        email -> Nullable<Text>,
        email_key -> Nullable<Text>,
        phone -> Nullable<Text>,
        password -> Text,
        is_active -> Bool,
        is_staff -> Bool,
        is_superuser -> Bool,
        date_joined -> Timestamp,
        last_login -> Nullable<Timestamp>,
    }
}

diesel::table! {
    otp_tokens (id) {
        id -> BigInt,
        user_id -> BigInt,
        channel -> Text,
        address -> Text,
        verified -> Bool,
        failure_count -> Integer,
        timeout_until -> Nullable<Timestamp>,
        code_hash -> Nullable<Text>,
        expires_at -> Nullable<Timestamp>,
        version -> Integer,
    }
}

diesel::joinable!(otp_tokens -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(users, otp_tokens);
