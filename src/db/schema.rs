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
        factor_version -> Integer,
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
    users,
    otp_tokens,
    sessions,
    outbox,
    send_log,
    throttles,
    ip_limits,
    activity,
    known_browsers,
    notice_log,
    second_factors,
    recovery_codes,
    api_flows,
    passkey_challenges
);

diesel::table! {
    sessions (id_hash) {
        id_hash -> Text,
        user_id -> Nullable<BigInt>,
        state -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        public_id -> Nullable<Text>,
        last_seen_at -> Nullable<Timestamp>,
        last_ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
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
    activity (id) {
        id -> BigInt,
        user_id -> BigInt,
        kind -> Text,
        detail -> Nullable<Text>,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        at -> Timestamp,
        hour -> Nullable<Timestamp>,
        count -> Integer,
    }
}

diesel::table! {
    second_factors (id) {
        id -> BigInt,
        user_id -> BigInt,
        kind -> Text,
        name -> Text,
        data -> Text,
        last_step -> BigInt,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        credential_id -> Nullable<Text>,
        public_id -> Nullable<Text>,
    }
}

diesel::table! {
    known_browsers (user_id, browser_hash) {
        user_id -> BigInt,
        browser_hash -> Text,
        first_seen -> Timestamp,
        last_seen -> Timestamp,
    }
}

diesel::table! {
    notice_log (id) {
        id -> BigInt,
        user_id -> BigInt,
        kind -> Text,
        sent_at -> Timestamp,
    }
}

diesel::joinable!(activity -> users (user_id));
diesel::joinable!(known_browsers -> users (user_id));
diesel::joinable!(notice_log -> users (user_id));

diesel::table! {
    recovery_codes (id) {
        id -> BigInt,
        user_id -> BigInt,
        code_hash -> Text,
        created_at -> Timestamp,
    }
}

diesel::joinable!(second_factors -> users (user_id));
diesel::joinable!(recovery_codes -> users (user_id));

diesel::table! {
    api_flows (id_hash) {
        id_hash -> Text,
        kind -> Text,
        state -> Text,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    passkey_challenges (id_hash) {
        id_hash -> Text,
        kind -> Text,
        user_id -> Nullable<BigInt>,
        state -> Text,
        expires_at -> Timestamp,
    }
}
