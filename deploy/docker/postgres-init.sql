-- One database per service: services share no tables.
CREATE DATABASE caretrail_records;
CREATE DATABASE caretrail_consent;
CREATE DATABASE caretrail_audit;
CREATE DATABASE caretrail_notify;
