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
        credential_version -> Integer,
        username_skeleton -> Nullable<Text>,
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
        code_purpose -> Nullable<Text>,
    }
}

diesel::joinable!(otp_tokens -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(
    users, otp_tokens, sessions, outbox, send_log, throttles, ip_limits, api_flows
);

diesel::table! {
    sessions (id_hash) {
        id_hash -> Text,
        user_id -> Nullable<BigInt>,
        state -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    outbox (id) {
        id -> BigInt,
        channel -> Text,
        recipient -> Text,
        subject -> Nullable<Text>,
        body_text -> Nullable<Text>,
        body_html -> Nullable<Text>,
        token_id -> Nullable<BigInt>,
        status -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        next_attempt_at -> Timestamp,
        attempts -> Integer,
        lease_until -> Nullable<Timestamp>,
        version -> Integer,
        finished_at -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    send_log (id) {
        id -> BigInt,
        address_key -> Text,
        channel -> Text,
        sent_at -> Timestamp,
    }
}

diesel::table! {
    throttles (key) {
        key -> Text,
        failures -> Integer,
        until -> Nullable<Timestamp>,
        updated_at -> Timestamp,
        version -> Integer,
    }
}

diesel::joinable!(sessions -> users (user_id));

diesel::table! {
    ip_limits (key) {
        key -> Text,
        tat -> Timestamp,
    }
}

diesel::table! {
    api_flows (id_hash) {
        id_hash -> Text,
        kind -> Text,
        state -> Text,
        expires_at -> Timestamp,
    }
}
